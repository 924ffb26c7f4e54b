"""``/v1/taxonomy``: the caller's tenant's taxonomy as a versioned resource, and its page ``/ui/taxonomy``.

Reading needs any valid key; every change (edit, whole replacement or YAML import, rollback) needs
``batches:write`` and stores a new version with the key's name, the time and a readable diff
(:mod:`voce.service.learning.taxonomies`).  Until a tenant saves a version, its taxonomy is the service's
configured one.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from voce.service.deps import (
    AUTH_RESPONSES,
    AnalyzerDep,
    AuthorDep,
    PageDep,
    ReadBatchesDep,
    ReadTaxonomyDep,
    WriteBatchesDep,
    WriteTaxonomyDep,
)
from voce.service.errors import ErrorEnvelope
from voce.service.learning.rescore import Rescorer, RescoreState
from voce.service.learning.taxonomies import Change, Edit, TaxonomyView, VersionInfo, to_yaml, with_taxonomy
from voce.service.web import PAGE_HEADERS, render_page

router = APIRouter(prefix="/v1", tags=["taxonomy"], responses={
    **AUTH_RESPONSES, 404: {"model": ErrorEnvelope, "description": "no such taxonomy version (or batch) for this tenant"},
})
page_router = APIRouter(include_in_schema=False)

Version = Annotated[int, Path(ge=1, le=1_000_000)]
Format = Annotated[Literal["json", "yaml"], Query(description="json | yaml (the file format `VOCE_TAXONOMY` reads)")]
_YAML: dict[int | str, dict[str, Any]] = {200: {"content": {"application/yaml": {}}}}


class TaxonomyEdits(BaseModel):
    """Edits applied in order to the active version, stored as one new version."""

    model_config = ConfigDict(extra="forbid")

    edits: list[Edit] = Field(min_length=1, max_length=100)
    message: str | None = Field(default=None, max_length=1000)
    expect_version: int | None = Field(
        default=None, ge=0, description="The version the edit was made on (0: the configured taxonomy); a newer "
                                        "active version refuses it (422 taxonomy.stale) instead of overwriting.")


class TaxonomyReplace(BaseModel):
    """A whole taxonomy, as a JSON object or as YAML text (the file format); a missing section keeps the
    active one's."""

    model_config = ConfigDict(extra="forbid")

    taxonomy: dict[str, Any] | None = None
    yaml: str | None = Field(default=None, max_length=1_000_000)
    message: str | None = Field(default=None, max_length=1000)


class VersionList(BaseModel):
    versions: list[VersionInfo]


class Diff(BaseModel):
    from_version: int = Field(description="0: the configured taxonomy")
    to_version: int | None = Field(description="None: the active taxonomy")
    changes: list[Change]


def _view(view: TaxonomyView, fmt: str) -> Any:
    if fmt == "yaml":
        from voce.models.taxonomy import parse_taxonomy

        return Response(to_yaml(parse_taxonomy(view.taxonomy)), media_type="application/yaml; charset=utf-8")
    t = view.taxonomy

    def entries(section: Any) -> list[dict[str, Any]]:
        return section if isinstance(section, list) else section["entries"]

    def mode(section: Any) -> str:
        return "multi" if isinstance(section, list) else str(section.get("mode", "multi"))

    return {
        "version": view.label, "tenant": view.tenant, "number": view.version, "stored": view.stored,
        "topics": entries(t["topics"]), "touchpoints": entries(t["touchpoints"]),
        "modes": {"topics": mode(t["topics"]), "touchpoints": mode(t["touchpoints"])},
    }


@router.get("/taxonomy", operation_id="get_taxonomy", responses=_YAML)
def get_taxonomy(taxonomy: ReadTaxonomyDep, format: Format = "json") -> Any:  # noqa: A002
    """The taxonomy the caller's tenant scores with: topic and touchpoint entries (ids, Italian/English names,
    descriptions, examples), its version string and number (null until the tenant saves one)."""
    return _view(taxonomy.view(), format)


@router.patch("/taxonomy", response_model=VersionInfo, operation_id="edit_taxonomy")
def edit_taxonomy(body: TaxonomyEdits, taxonomy: WriteTaxonomyDep, author: AuthorDep) -> VersionInfo:
    """Add, update (names, descriptions, examples, channels), rename, merge or retire entries: one new version."""
    return taxonomy.edit(body.edits, author, body.message, body.expect_version)


@router.put("/taxonomy", response_model=VersionInfo, operation_id="replace_taxonomy")
def replace_taxonomy(body: TaxonomyReplace, taxonomy: WriteTaxonomyDep, author: AuthorDep) -> VersionInfo:
    """Store a whole taxonomy (JSON object or YAML text, e.g. a file kept in git) as a new version."""
    from voce.service.learning.taxonomies import TaxonomyEditError

    if (body.taxonomy is None) == (body.yaml is None):
        raise TaxonomyEditError("send either 'taxonomy' (an object) or 'yaml' (text)", "taxonomy.one_of")
    if body.yaml is not None:
        return taxonomy.import_yaml(body.yaml, author, body.message)
    return taxonomy.replace(body.taxonomy, author, body.message)


@router.get("/taxonomy/versions", response_model=VersionList, operation_id="list_taxonomy_versions")
def versions(
    taxonomy: ReadTaxonomyDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> VersionList:
    """The tenant's versions, newest (the active one) first, each with author, time, message and changes."""
    return VersionList(versions=taxonomy.history(limit, offset))


@router.get("/taxonomy/versions/{version}", operation_id="get_taxonomy_version", responses=_YAML)
def version(version: Version, taxonomy: ReadTaxonomyDep, format: Format = "json") -> Any:  # noqa: A002
    """One stored version, whole."""
    return _view(taxonomy.view(version), format)


@router.get("/taxonomy/diff", response_model=Diff, operation_id="diff_taxonomy_versions")
def diff(
    taxonomy: ReadTaxonomyDep,
    from_version: Annotated[int, Query(alias="from", ge=0, le=1_000_000, description="0: the configured one")],
    to_version: Annotated[int | None, Query(alias="to", ge=0, le=1_000_000, description="omitted: the active one")]
    = None,
) -> Diff:
    """What changed between two versions."""
    return Diff(from_version=from_version, to_version=to_version, changes=taxonomy.diff(from_version, to_version))


@router.post("/taxonomy/versions/{version}/rollback", response_model=VersionInfo, status_code=201,
             operation_id="rollback_taxonomy")
def rollback(version: Version, taxonomy: WriteTaxonomyDep, author: AuthorDep) -> VersionInfo:
    """Make ``version`` active again: a new version equal to it (the history keeps every version)."""
    return taxonomy.rollback(version, author)


@page_router.get("/ui/taxonomy", response_class=HTMLResponse)
def taxonomy_page(request: Request, page: PageDep) -> Response:
    """View and edit the tenant's taxonomy, its versions, their diffs, rollback."""
    principal, _ = page
    if principal is None:
        from urllib.parse import quote

        return RedirectResponse(f"/ui/signin?next={quote('/ui/taxonomy', safe='')}", status_code=303)
    who = f"{principal.tenant} · {principal.key_prefix}…" if principal.key_prefix else principal.tenant
    body = render_page("taxonomy.html", csrf_token=principal.csrf or "", who=who,
                       signout_hidden="" if principal.via == "session" else "hidden")
    return HTMLResponse(body, headers=PAGE_HEADERS)


# ------------------------------------------------------------------ re-scoring a batch with the active version
def _rescorer(request: Request) -> Rescorer:
    found: Rescorer | None = getattr(request.app.state, "rescorer", None)
    if found is None:
        found = request.app.state.rescorer = Rescorer()
    return found


_BUSY: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorEnvelope, "description": "the batch is still being analysed or re-scored"},
}


@router.post("/batches/{batch_id}/rescore", response_model=RescoreState, status_code=202,
             operation_id="rescore_batch", responses=_BUSY)
def rescore(batch_id: str, request: Request, batches: WriteBatchesDep, analyzer: AnalyzerDep,
            taxonomy: WriteTaxonomyDep) -> RescoreState:
    """Score a finished batch again with the tenant's active taxonomy (no retraining: zero-shot entries follow the
    taxonomy); its input columns and corrections stay.  Follow it with `GET .../rescore`."""
    b = batches.get(batch_id)
    active, _ = taxonomy.current()
    return _rescorer(request).start(batches.store, with_taxonomy(analyzer, active), b, active)


@router.get("/batches/{batch_id}/rescore", response_model=RescoreState, operation_id="get_batch_rescore")
def rescore_state(batch_id: str, request: Request, batches: ReadBatchesDep) -> RescoreState:
    """Progress of the batch's re-score in this process ("none" when there is none)."""
    batches.get(batch_id)
    return _rescorer(request).state(batch_id)
