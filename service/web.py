"""Server-rendered pages for CX teams (upload, batch list, dashboard); filled in by the web UI work."""
from __future__ import annotations

from fastapi import APIRouter


def build_web_router() -> APIRouter:
    return APIRouter(include_in_schema=False)
