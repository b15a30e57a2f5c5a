"""``engine serve``: the routing graph behind HTTP, in the OpenAI and Anthropic dialects."""
