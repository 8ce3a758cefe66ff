"""ClearSepModel: a query-conditioned separation model in the style of a transformers model folder."""
