"""Model weights, the registry of installed models, the tokenizer and the weight formats."""
