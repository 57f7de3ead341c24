"""`python -m keras_kd COMMAND`: see `keras_kd.cli`."""

import sys

from keras_kd.cli import main

if __name__ == "__main__":
    sys.exit(main())
