"""``python -m img2vid``: the same as the ``img2vid`` command."""

from .cli import main

main()
