"""``python -m devserver.cli``: the console script (how ``serve --workers`` starts its workers)."""

from . import main

main()
