"""One table, so that the demo exercises migrations and writes through the pooler."""
from django.db import models


class Hit(models.Model):
    """A request to the index page."""

    created = models.DateTimeField(auto_now_add=True)
