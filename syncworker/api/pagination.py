"""The API's pagination: DRF's limit/offset with a ceiling on ``limit``, so a huge value
is capped instead of reaching the database (where it overflows)."""

from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    max_limit = 1000
