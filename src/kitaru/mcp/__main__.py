"""``python -m kitaru.mcp``: the same stdio server as the ``kitaru-mcp`` console script."""

from kitaru.mcp import main

if __name__ == "__main__":
    main()
