"""``python -m kitaru.cli``: the same as the ``kitaru`` command."""

from kitaru.cli._app import main

if __name__ == "__main__":
    main()
