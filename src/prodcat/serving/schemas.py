"""Request and response models of the API.

The request models are built from the serving settings, so the limits a client reads in the
OpenAPI schema (``maxLength`` of the title...) are the limits the server applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prodcat.serving.config import ServingSettings
from prodcat.text.cleaning import VISIBLE_PATTERN

# ---------------------------------------------------------------------------------------------
# responses


class Category(BaseModel):
    code: str = Field(description="category code, as in the training labels")
    name: str = Field(description="category name from the taxonomy (the code when it has none)")
    parent: str | None = Field(default=None, description="parent category, when known")
    probability: float = Field(ge=0.0, le=1.0)


class CategoryInfo(BaseModel):
    code: str
    name: str
    parent: str | None = None


class Prediction(BaseModel):
    id: str | None = Field(default=None, description="the request's id, echoed back")
    top_k: list[Category] = Field(description="most likely categories, best first")
    modalities: dict[str, list[Category] | None] = Field(
        description="what each modality says on its own (`text`, and `image` when the model has "
                    "one; null when that modality had no input)")
    needs_review: bool = Field(description="true when the best probability is below the threshold")
    decision: str = Field(description='"automatic" or "needs review"')
    threshold: float = Field(description="automation threshold of the model")
    ocr_text: str | None = Field(
        default=None, description="the words read on the photo (\"\" when none were), for a model "
                                  "that reads them (`prodcat train --ocr`); null otherwise")


class PredictResponse(Prediction):
    model_id: str
    latency_ms: float = Field(description="server time for this request, queueing included")


class ExplainResponse(BaseModel):
    answer: list[Category] = Field(description="the final answer, best first (what /v1/predict says)")
    text: dict[str, Any] | None = Field(
        description="the listing's cleaned words (`tokens`, with `span` offsets into the raw title "
                    "or description when known; for a model that reads the photo's words those too, "
                    "with `source` \"photo\" and `field` \"photo\", or \"marker\" for the marker "
                    "around them) and, per answered class, each word's signed weight "
                    "(`token_weights`, in `unit`), the weights summed by `sources`, the top words "
                    "(each with its `source`), the bias; null without text")
    image: dict[str, Any] | None = Field(
        description="the heat map of the photo regions behind the top class (`heatmap.grid`, "
                    "coarse; the overlay is `heatmap_png`); null without a usable photo")
    modalities: dict[str, Any] = Field(
        description="per class: fused, text-only and image-only probabilities, how far the photo "
                    "and the text moved the answer; whether the modalities agree")
    ocr: dict[str, Any] | None = Field(
        default=None,
        description="for a model that reads the photo's words: the words as read (`words`: `text`, "
                    "`confidence`, `box` [left, top, right, bottom] in a photo of `size`, `weight` for "
                    "the top class), `text`, `status`, `engine`; null otherwise or without a photo")
    notes: list[str] = Field(description="parts left out and why")
    heatmap_png: str | None = Field(
        default=None, description="the photo with the heat map over it, PNG, base64-encoded",
        json_schema_extra={"contentEncoding": "base64", "contentMediaType": "image/png"})
    seconds: float
    model_id: str
    latency_ms: float


class BatchResponse(BaseModel):
    results: list[Prediction]
    model_id: str
    latency_ms: float


class CategoriesResponse(BaseModel):
    count: int
    categories: list[CategoryInfo]


class ModelResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    model_id: str
    created_at: str | None = None
    n_classes: int
    threshold: float
    modalities: list[str]
    training: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    limits: dict[str, int] = {}


class Health(BaseModel):
    status: str
    model_id: str | None = None


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. title_required")
    message: str = Field(description="what went wrong, for a person")


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {401: "missing or invalid API key", 413: "request, photo or batch too large",
            415: "unsupported media type or not an image", 422: "invalid input",
            503: "model not loaded yet, or shutting down"}
    return {s: {"model": ErrorResponse, "description": text.get(s, "error")} for s in statuses}


# ---------------------------------------------------------------------------------------------
# requests


@dataclass(frozen=True)
class RequestModels:
    predict: type[BaseModel]
    form: type[BaseModel]
    batch: type[BaseModel]
    explain: type[BaseModel]
    explain_form: type[BaseModel]


def request_models(s: ServingSettings) -> RequestModels:
    """The request models for the limits in ``s``."""
    # At least one visible character: a title of spaces or zero-width spaces is as empty as none.
    Title = Annotated[str, Field(min_length=1, max_length=s.max_title_chars, pattern=VISIBLE_PATTERN,
                                 description=f"listing title (required, at most {s.max_title_chars} characters)")]
    Description = Annotated[str | None, Field(
        max_length=s.max_description_chars,
        description=f"listing description (optional, at most {s.max_description_chars} characters)")]
    TopK = Annotated[int, Field(ge=1, le=s.max_top_k, description="how many categories to return")]

    class PredictRequest(BaseModel):
        """One listing, as JSON; the photo, if any, base64-encoded."""

        model_config = ConfigDict(title="PredictRequest")

        id: Annotated[str | None, Field(max_length=200, description="echoed back (for batches)")] = None
        title: Title
        description: Description = None
        image: Annotated[str | None, Field(
            description=f"the photo (JPEG, PNG, WebP, GIF or BMP), base64-encoded, at most "
                        f"{s.max_image_bytes} bytes decoded",
            json_schema_extra={"contentEncoding": "base64"})] = None
        top_k: TopK = 3

    class PredictForm(BaseModel):
        """One listing, as a multipart form; the photo as a file part."""

        model_config = ConfigDict(title="PredictForm")

        title: Title
        description: Description = None
        top_k: TopK = 3

    class BatchRequest(BaseModel):
        """Several listings in one request (at most ``maxItems``: more is refused with 413)."""

        model_config = ConfigDict(title="BatchRequest")

        items: Annotated[list[PredictRequest], Field(
            min_length=1, json_schema_extra={"maxItems": s.max_batch},
            description=f"1 to {s.max_batch} listings")]

    class ExplainOptions(BaseModel):
        text_method: Annotated[Literal["auto", "linear", "lime"], Field(
            description="exact word contributions of the linear head (`linear`), LIME for any "
                        "head (`lime`), or the first that applies (`auto`)")] = "auto"
        image_method: Annotated[Literal["auto", "gradcam", "occlusion"], Field(
            description="Grad-CAM (needs PyTorch on the server) or occlusion sensitivity; "
                        "`auto`: Grad-CAM when available")] = "auto"
        lime_samples: Annotated[int, Field(ge=10, le=s.max_lime_samples,
                                           description="perturbed copies LIME classifies")] = 300
        heatmap: Annotated[bool, Field(description="return the heat-map overlay as a PNG")] = True

    class ExplainRequest(ExplainOptions, PredictRequest):
        """One listing to explain, as JSON (the photo base64-encoded), with explanation options."""

        model_config = ConfigDict(title="ExplainRequest")

    class ExplainForm(ExplainOptions, PredictForm):
        """One listing to explain, as a multipart form; the photo as a file part."""

        model_config = ConfigDict(title="ExplainForm")

    return RequestModels(predict=PredictRequest, form=PredictForm, batch=BatchRequest,
                         explain=ExplainRequest, explain_form=ExplainForm)


def form_schema(form: type[BaseModel], max_image_bytes: int) -> dict[str, Any]:
    """OpenAPI schema of a multipart form: the form fields plus the photo as a binary part."""
    schema = form.model_json_schema()
    schema["properties"]["image"] = {
        "type": "string", "format": "binary",
        "description": f"the photo (JPEG, PNG, WebP, GIF or BMP), at most {max_image_bytes} bytes"}
    return schema
