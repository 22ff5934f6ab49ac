"""``python -m cpo.demo``: the same as ``cpo demo``."""

import argparse
import sys

from . import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m cpo.demo", description=sys.modules["cpo.demo"].__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
