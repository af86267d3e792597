/* placeholder so the layer library has a translation unit until its code lands */
typedef int kg_evaluate_unit_placeholder;
