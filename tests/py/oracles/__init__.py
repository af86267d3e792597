"""Float64 NumPy oracles for compress/: each module restates one reference
algorithm (Wanda, SparseGPT, GPTQ, OWL) from its published definition, so
that the C implementation is checked against an independent computation."""
