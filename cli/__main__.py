"""`python -m keras_rnn.cli ...` is the `keras-rnn` command."""

import sys

from keras_rnn.cli import main

sys.exit(main())
