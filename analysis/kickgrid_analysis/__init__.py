"""Analysis of kickgrid result cubes: loading and tables (`cube`), figures
(`plots`), and the HTML/CSV/JSON report behind `kickgrid report` (`report`).

Submodules are imported explicitly (`from kickgrid_analysis import cube`) so
that `python3 -m kickgrid_analysis.report` can name missing packages before
anything needs them."""
__all__ = ["cube", "plots", "report"]
