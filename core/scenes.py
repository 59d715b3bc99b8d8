"""Parameters of the synthetic scenes (`synthetic:conveyor`, `synthetic:crossing`): one pydantic
model per scene, the single place their defaults and bounds are declared.

They live in `core/` because three layers read them: the config schema (a camera's
`synthetic:` section), the URI grammar (`synthetic:conveyor?speed=150`) and the renderer in
`stream/synthetic.py`.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["ConveyorParams", "CrossingParams", "SCENE_PARAMS", "coerce_params"]


class _SceneParams(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    width: int = Field(768, ge=320, le=3840, description="frame width, px")
    height: int = Field(432, ge=200, le=2160, description="frame height, px")
    fps: float = Field(25.0, ge=1.0, le=120.0, allow_inf_nan=False)
    noise: float = Field(2.5, ge=0.0, le=40.0, allow_inf_nan=False,
                         description="sensor noise sigma, grey levels (0 = off)")
    lighting_drift: float = Field(0.04, ge=0.0, le=0.5, allow_inf_nan=False,
                                  description="amplitude of the slow global brightness change (0.04 = +-4 %)")
    lighting_period: float = Field(20.0, ge=0.5, le=3600.0, allow_inf_nan=False, description="s")
    frames: int = Field(0, ge=0, le=10**9, description="frames a source yields (0 = endless)")


class ConveyorParams(_SceneParams):
    """Parts (flange, bracket, nut) with printed serials ride a belt left to right."""

    speed: float = Field(120.0, ge=5.0, le=2000.0, allow_inf_nan=False, description="belt and part speed, px/s")
    spacing: float = Field(80.0, ge=4.0, le=2000.0, allow_inf_nan=False,
                           description="minimum free belt between two parts, px (gaps vary +0..50 %)")
    defect_rate: float = Field(0.2, ge=0.0, le=1.0, allow_inf_nan=False, description="share of defective parts")
    shapes: str = Field("flange,bracket,nut", description="comma-separated part shapes")
    serial_start: int = Field(1, ge=0, le=9999, description="serial number of part 0")
    prefill: bool = Field(True, description="frame 0 already shows a full belt")

    @field_validator("shapes", mode="before")
    @classmethod
    def _shapes(cls, v: Any) -> Any:
        return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v


class CrossingParams(_SceneParams):
    """Textured shapes cross the frame, passing in front of / behind each other and a bar."""

    width: int = Field(768, ge=160, le=3840, description="frame width, px")
    height: int = Field(432, ge=120, le=2160, description="frame height, px")
    noise: float = Field(2.0, ge=0.0, le=40.0, allow_inf_nan=False, description="sensor noise sigma")
    lighting_drift: float = Field(0.0, ge=0.0, le=0.5, allow_inf_nan=False)
    objects: int = Field(5, ge=1, le=32, description="objects on screen at once (one per lane)")
    speed_min: float = Field(60.0, ge=1.0, le=2000.0, allow_inf_nan=False, description="px/s")
    speed_max: float = Field(180.0, ge=1.0, le=2000.0, allow_inf_nan=False, description="px/s")
    size_min: int = Field(44, ge=8, le=400, description="px")
    size_max: int = Field(90, ge=8, le=400, description="px")
    curvature: float = Field(0.15, ge=0.0, le=0.5, allow_inf_nan=False,
                             description="max sideways bow of a path, fraction of its length")
    occluder: bool = Field(True, description="static vertical bar in front of everything")
    occluder_x: float = Field(0.5, ge=0.0, le=1.0, allow_inf_nan=False, description="bar centre, fraction of width")
    occluder_width: int = Field(36, ge=1, le=400, description="px")
    pause_max: float = Field(1.5, ge=0.0, le=60.0, allow_inf_nan=False, description="s between two traversals of a lane")


SCENE_PARAMS: dict[str, type[_SceneParams]] = {"conveyor": ConveyorParams, "crossing": CrossingParams}


def coerce_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Defaults of scene `name` updated with `params` (strings from a URI query are converted by
    the model). Unknown scene or parameter, wrong type or out of bounds: ValueError naming it."""
    model = SCENE_PARAMS.get(name)
    if model is None:
        raise ValueError(f"unknown synthetic scene {name!r} (known: {', '.join(sorted(SCENE_PARAMS))})")
    try:
        return model.model_validate(params).model_dump()
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(parameters)"
        if err["type"] == "extra_forbidden":
            raise ValueError(f"unknown parameter {key!r} for synthetic scene {name!r} "
                             f"(known: {', '.join(sorted(model.model_fields))})") from None
        got = err.get("input")
        if err["type"] in ("greater_than_equal", "less_than_equal"):
            f = model.model_fields[key]
            lo = next((m.ge for m in f.metadata if getattr(m, "ge", None) is not None), None)
            hi = next((m.le for m in f.metadata if getattr(m, "le", None) is not None), None)
            raise ValueError(f"parameter {key!r} of synthetic scene {name!r} = {got} is out of "
                             f"bounds [{lo}, {hi}]") from None
        raise ValueError(f"parameter {key!r} of synthetic scene {name!r} has a bad value {got!r} "
                         f"({err['msg']})") from None
