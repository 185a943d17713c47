"""Framework adapters: make an agent framework's model requests, tool calls or graph
nodes durable calls of the running Kitaru execution.

Each adapter is its own module and needs its framework (an extra):
``kitaru.adapters.pydantic_ai`` (``kitaru[pydantic-ai]``),
``kitaru.adapters.openai_agents`` (``kitaru[openai-agents]``) and
``kitaru.adapters.langgraph`` (``kitaru[langgraph]``). Importing one without its
framework raises ``KitaruFeatureNotAvailableError`` naming the extra.
"""
