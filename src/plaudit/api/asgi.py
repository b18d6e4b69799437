"""The API application of a scale-out process, built from the environment (uvicorn imports
it in each process it starts: ``plaudit serve --workers N``)."""

from __future__ import annotations

from fastapi import FastAPI

from plaudit.api.app import create_app
from plaudit.bootstrap import build
from plaudit.runtime import settle
from plaudit.settings import Settings


def scale_out_app() -> FastAPI:
    container = build(Settings())
    background = [container.stream.serve] if container.stream is not None else []
    app = create_app(container, background=background, on_shutdown=[container.close])
    settle()
    return app
