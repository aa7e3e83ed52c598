"""The database: models, engines, migrations. Importing the package registers every table."""

from db import audit_models, models

__all__ = ["audit_models", "models"]
