"""``python -m nosdn``: the same as the ``nosdn`` command."""

from nosdn.cli import main

main()
