"""The validation and deploy report: facts, formatted page, plots.

One-way imports inside the package: ``facts`` (the numbers behind the report, JSON-able
dicts in ``validation.json``) <- ``page`` (the HTML page from those facts) <- ``sections``
(the deploy report's extra sections); ``plots`` (matplotlib figures) stands alone. Nothing
here imports :mod:`tinydeploy.validation`, which calls into this package.
"""
