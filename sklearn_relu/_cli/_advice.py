"""The estimator's advice, in this command's flags."""

#: The estimator's advice in Python, and the same advice in this command's flags.
_CLI_ADVICE = (
    ("make_pipeline(StandardScaler(), ReLURegressor())", "--standardize"),
    ("raise max_iter", "raise --max-iter"),
    ("raise n_iter_no_change", "raise --n-iter-no-change"),
    ("learning_rate='auto'", "--learning-rate auto"),
    ("or give a learning_rate", "or give --learning-rate"),
    ("a smaller learning_rate", "a smaller --learning-rate"),
    ("init='zeros'", "--init zeros"),
    ("MPIBackend(topology='allreduce')", "--topology allreduce"),
    ("topology='allgather'", "--topology allgather"),
    ("solver='sgd'", "--solver sgd"),
    ("solver='intsgd'", "--solver intsgd"),
)


def in_cli_words(text):
    """``text`` (a warning's or an error's message) in this command's flags
    instead of the estimator's parameters, where it gives advice.

    >>> in_cli_words("use MPIBackend(topology='allreduce') (or 'auto')")
    "use --topology allreduce (or 'auto')"
    """
    for python, flag in _CLI_ADVICE:
        text = text.replace(python, flag)
    return text
