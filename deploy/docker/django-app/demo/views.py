"""Two pages: / records a hit in a transaction, /health/ checks the database."""
from django.db import connection, transaction
from django.http import JsonResponse

from demo.models import Hit


def index(request):
    """Adds a hit and answers how many there are, all in one transaction."""
    with transaction.atomic():
        Hit.objects.create()
        hits = Hit.objects.count()
    return JsonResponse({"hits": hits})


def health(request):
    """200 when a query through the pooler works."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return JsonResponse({"status": "ok"})
