"""A real, small training example the TrainingRun examples, tests and demo run.

``python -m ferry.examples.data`` writes synthetic fraud transactions (with a drift knob);
``python -m ferry.examples.trainer`` trains on them (scikit-learn, or a PyTorch MLP with DDP under
torchrun), logs to MLflow and checkpoints so a preempted pod resumes where it stopped.
"""
