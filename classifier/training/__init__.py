"""Training, export and evaluation of the starter models (``manage.py train_starter_models``).

torch is an optional extra, needed only to train: ``pip install torch==2.13.0`` (or ``pip install -e .[train]``).
``metrics`` and ``evaluate`` do not import torch, so the Django side can measure and compare candidate
models with them; the other modules import it at the top and are only imported by the training command.
"""
