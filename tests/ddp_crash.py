"""`mmfc` under torchrun, every rank stopping at the start of its second training epoch, as a
killed job would: tests/test_ddp.py uses it for a checkpoint of a 2-process run at epoch 1."""

import sys

from mmfc.cli import app
from mmfc.train import fit

real_epoch, calls = fit.train_epoch, []


def stop_in_second_epoch(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        sys.exit(3)
    return real_epoch(*args, **kwargs)


fit.train_epoch = stop_in_second_epoch
app()
