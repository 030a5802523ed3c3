"""The search a data team runs on the stored layout (default index ``recordgate``).

Kept verbatim in one place: the README shows it and ``tests/connectors/test_elasticsearch.py``
runs exactly it.
"""

from __future__ import annotations

__all__ = ["DATA_TEAM_QUERY"]

DATA_TEAM_QUERY = """\
GET recordgate/_search
{
  "query": {
    "bool": {
      "filter": [
        {"term": {"collection": "user"}},
        {"range": {"data.age": {"gt": 30}}}
      ]
    }
  },
  "sort": [{"name": "asc"}],
  "_source": ["name", "data.age"]
}"""
