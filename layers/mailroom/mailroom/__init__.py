"""Mailroom's domain package: models, logic, adapters and mail templates.

It ships in the MailroomLayer (layers/mailroom/) and is imported by every function.
Layers of dependency point one way only: ``models`` (no I/O) <- ``logic`` (rules, takes
its collaborators as arguments) <- ``adapters`` (the only code that touches boto3).
Handlers (functions/<name>/app.py) wire them together with settings read from the
environment (``config``).
"""

__version__ = "0.1.0"
