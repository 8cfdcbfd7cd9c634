"""Human judging: the "Judge it yourself" page, blind sets from judging pools, answers, exports and the report
(:mod:`control_panel.judging`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from control_panel.deps import Authorized, Limit, Offset, Panel
from control_panel.judging import AnswerRequest, SetRequest

router = APIRouter(tags=["judging"])
PAGE = Path(__file__).resolve().parents[1] / "judge.html"
MAX_FORM_BYTES = 256 * 1024


@router.get("/judge", response_class=HTMLResponse, include_in_schema=False)
async def judge_page() -> str:
    return PAGE.read_text()


@router.get("/api/judging/pools")
async def list_pools(state: Panel) -> list[dict[str, Any]]:
    """The pools sets are drawn from: attack, threat model, condition, data set and class names, size."""
    return state.judging.list_pools()


@router.post("/api/judging/sets", status_code=201, dependencies=Authorized,
             responses={404: {"description": "no such pool"}, 422: {"description": "more items than the pool has"}})
async def create_set(state: Panel, req: SetRequest) -> dict[str, Any]:
    """Draw a blind set from a pool: ``n`` reconstructions and ``checks`` clean images, in a random order."""
    return state.judging.create(req)


@router.get("/api/judging/sets")
async def list_sets(state: Panel, limit: Limit = 50, offset: Offset = 0) -> list[dict[str, Any]]:
    """The newest sets first; figures only for finished sets."""
    return state.judging.list(limit, offset)


@router.get("/api/judging/sets/{set_id}")
async def get_set(state: Panel, set_id: str) -> dict[str, Any]:
    """Status (open, judging, finished) and, once finished, the figures: human-judged accuracy with its 95%
    interval, "can't tell" count, attention-check score and each judge's agreement with the person."""
    return state.judging.get(set_id)


@router.get("/api/judging/sets/{set_id}/next")
async def next_item(state: Panel, set_id: str) -> dict[str, Any]:
    """The next unanswered item: its position and image (a PNG data URL), never its label or kind."""
    return state.judging.next_item(set_id)


@router.post("/api/judging/sets/{set_id}/answers", dependencies=Authorized,
             responses={404: {"description": "no such set or item"},
                        409: {"description": "the item is already answered, or the set is finished"},
                        422: {"description": "not a class index or 'cant_tell'"}})
async def answer(state: Panel, set_id: str, req: AnswerRequest) -> dict[str, Any]:
    """Store one answer (final: a stored answer never changes) and return the next item."""
    return state.judging.answer(set_id, req)


@router.get("/api/judging/sets/{set_id}/sheet.png", responses={200: {"content": {"image/png": {}}},
                                                               409: {"description": "the set is being judged"}})
async def sheet(state: Panel, set_id: str) -> Response:
    """Every item on one numbered sheet, for offline judging (refused while the set is being judged)."""
    return Response(state.judging.sheet(set_id), media_type="image/png")


@router.get("/api/judging/sets/{set_id}/form.csv", response_class=PlainTextResponse,
            responses={409: {"description": "the set is being judged"}})
async def form(state: Panel, set_id: str) -> str:
    """A blank answer form (``item,answer``) for the sheet; the key stays in the panel."""
    return state.judging.form(set_id)


@router.post("/api/judging/sets/{set_id}/form", dependencies=Authorized,
             responses={409: {"description": "an item is already answered, or the set is finished"},
                        422: {"description": "a line that is not 'item,answer'"}})
async def submit_form(state: Panel, set_id: str,
                      file: Annotated[UploadFile, File(description="the filled form.csv")]) -> dict[str, Any]:
    """Store a filled form's answers, all or none."""
    data = await file.read(MAX_FORM_BYTES + 1)
    if len(data) > MAX_FORM_BYTES:
        raise HTTPException(413, f"a form is at most {MAX_FORM_BYTES} bytes")
    return state.judging.submit_form(set_id, data.decode("utf-8", errors="replace"))


@router.get("/api/judging/sets/{set_id}/answers", responses={409: {"description": "the set is not finished"}})
async def answers(state: Panel, set_id: str) -> dict[str, Any]:
    """A finished set's stored answers with their keys (kind, true class, every judge's label), in item order."""
    return state.judging.answers(set_id)


@router.get("/api/judging/report")
async def report(state: Panel) -> dict[str, Any]:
    """The calibration report over every finished set: per pool and overall, the human-judged accuracy, and per
    judge its agreement with people and what it says where they could not tell; ``answers`` says how many."""
    return state.judging.report()
