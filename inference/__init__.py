"""Answering questions with trained checkpoints (predict.py): one module per job.

    models      checkpoints ready to answer: model, vocabulary checked against the recorded fingerprint
    questions   question text (and candidates) -> token ids as the question files encode them, unknown words named
    extraction  which extraction settings a checkpoint needs (recorded, from a feature file, or from flags)
    answering   one forward pass over a batch: probabilities, top answers, attention (model/attention.py)
    explain     the pictures: one PNG and a self-contained HTML page per question
"""


class PredictError(ValueError):
    """Bad input to predict.py (missing or undecodable video, empty question, a checkpoint that does not fit the
    vocabulary or the features given): one line, exit code 2."""
