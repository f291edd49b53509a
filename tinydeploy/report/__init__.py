"""The validation and deploy report: facts, headline, page, plots.

One-way imports inside the package (tests/test_layout.py): ``facts`` (the numbers behind
the report, JSON-able dicts in ``validation.json``) and ``fmt`` (values as text) at the
bottom; ``headline`` (verdict, key figures, diagnosis) on them; ``xcross`` (device vs the
float model) on ``facts``; ``run`` (the facts of one validation run) on those; ``page``
(the HTML page) on ``fmt``; ``sections`` (the deploy report's extra sections) on ``fmt``;
``plots`` (matplotlib figures) stands alone. Nothing here imports
:mod:`tinydeploy.validation`, which calls into this package.
"""
