"""The random part of the scene generator: a street described in world units (metres).

`make_layout(rng)` draws everything random about one street -- camera, road and lane widths,
facades, the distant skyline, trees, vehicles, pedestrians, weather and lighting -- so rendering
(`synth_render`) is a deterministic function of this description and of time. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SYNTH_CLASSES: list[str] = [
    "sky",
    "building",
    "vegetation",
    "road",
    "sidewalk",
    "lane_marking",
    "vehicle",
    "pedestrian",
]
# Cityscapes-like colours so overlays look familiar.
SYNTH_PALETTE: list[tuple[int, int, int]] = [
    (70, 130, 180),
    (70, 70, 70),
    (107, 142, 35),
    (128, 64, 128),
    (244, 35, 232),
    (255, 255, 255),
    (0, 0, 142),
    (220, 20, 60),
]
SKY, BUILDING, VEGETATION, ROAD, SIDEWALK, MARKING, VEHICLE, PEDESTRIAN = range(len(SYNTH_CLASSES))

TRUNK = 250  # temporary mask label: vegetation pixels painted directly (trunks), not leaf-textured
CYCLE = 320.0  # metres after which the street layout repeats along the driving direction
PED_RANGE = (3.0, 25.0)  # metres: pedestrians walk within this depth range (farther ones are specks)
Z_NEAR = 0.5  # metres: static things closer than this have left the view (they are off-screen by then)


# --------------------------------------------------------------------------------------------------
# Scene description: everything random is drawn here, rendering is then deterministic.
# --------------------------------------------------------------------------------------------------
@dataclass
class _Segment:
    start: float  # world Z where the building starts (within the cycle)
    length: float
    height: float  # 0 = a gap in the facade
    wall: np.ndarray  # RGB float32
    window: np.ndarray
    floor_h: float
    win_w: float
    win_period: float


@dataclass
class Side:
    x: float  # lateral position of the facade plane (metres, signed)
    segments: list[_Segment]
    starts: np.ndarray  # segment starts, sorted, for searchsorted
    light: float  # sun-facing facades are brighter
    _arrays: dict[str, np.ndarray] | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """Segment attributes as arrays, so rendering gathers them per column without Python loops."""
        if self._arrays is None:
            s = self.segments
            f32 = np.float32
            self._arrays = {
                "height": np.array([g.height for g in s], f32),
                "length": np.array([g.length for g in s], np.float64),
                "wall": np.stack([g.wall for g in s]).astype(f32),
                "window": np.stack([g.window for g in s]).astype(f32),
                "floor_h": np.array([g.floor_h for g in s], f32),
                "win_w": np.array([g.win_w for g in s], f32),
                "period": np.array([g.win_period for g in s], f32),
            }
        return self._arrays


@dataclass
class Actor:
    kind: int  # VEHICLE, PEDESTRIAN or VEGETATION (tree)
    x: float
    z0: float  # world Z at t=0
    speed: float  # m/s along +Z (away from the camera) in world coordinates
    size: tuple[float, ...]
    colors: list[np.ndarray]
    phase: float = 0.0
    style: int = 0


@dataclass
class Layout:
    horizon: float  # fraction of height
    vx: float  # vanishing point, fraction of width
    focal: float  # fraction of width
    cam_h: float
    cam_x: float
    cam_speed: float
    road_w: float
    lanes: int
    lane_w: float
    sw_left: float
    sw_right: float
    verge_left: float
    verge_right: float
    z_far: float
    sides: list[Side]
    backdrop_tops: np.ndarray  # metres above ground per backdrop column block
    backdrop_kind: np.ndarray  # BUILDING / VEGETATION / SKY per block
    backdrop_colors: np.ndarray
    actors: list[Actor]
    sky_top: np.ndarray
    sky_bottom: np.ndarray
    clouds: float
    road_rgb: np.ndarray
    sidewalk_rgb: np.ndarray
    grass_rgb: np.ndarray
    leaf_rgb: np.ndarray
    marking_rgb: np.ndarray
    marking_w: float
    dash_len: float
    dash_period: float
    edge_lines: bool
    tile: float
    shadow_x: float  # ground left of this lateral position is in shadow
    shadow_gain: float
    brightness: float
    tint: np.ndarray
    gamma: float
    noise: float
    blur: bool
    drift: float  # camera sway amplitude (metres) in videos
    extra: dict = field(default_factory=dict)


def _rgb(rng: np.random.Generator, base: tuple[float, float, float], jitter: float) -> np.ndarray:
    return np.clip(np.asarray(base, np.float32) + rng.uniform(-jitter, jitter, 3), 0, 255).astype(np.float32)


_WALLS = [(150, 150, 150), (185, 170, 140), (150, 80, 60), (215, 210, 200), (110, 90, 75), (95, 105, 120)]
_CARS = [(200, 30, 30), (30, 60, 160), (230, 230, 230), (25, 25, 25), (140, 140, 145), (40, 120, 60),
         (230, 180, 30), (90, 40, 110), (170, 110, 60)]  # fmt: skip
_GREENS = [(60, 110, 40), (85, 125, 45), (45, 90, 50), (110, 130, 55)]
_SIDEWALKS = [(175, 170, 160), (190, 160, 140), (150, 145, 140), (200, 190, 170)]
_SKIN = [(230, 190, 160), (200, 150, 110), (150, 100, 70), (95, 65, 45)]


def _make_side(rng: np.random.Generator, x: float, light: float) -> Side:
    segs: list[_Segment] = []
    z = float(rng.uniform(0, 10))
    while z < CYCLE:
        length = float(rng.uniform(8, 30))
        gap = rng.random() < 0.18
        segs.append(
            _Segment(
                start=z,
                length=length,
                height=0.0 if gap else float(rng.uniform(5, 28)),
                wall=_rgb(rng, _WALLS[rng.integers(len(_WALLS))], 25),
                window=_rgb(rng, (45, 55, 70), 25) * float(rng.choice([1.0, 1.0, 2.6])),
                floor_h=float(rng.uniform(2.8, 3.6)),
                win_w=float(rng.uniform(0.35, 0.7)),
                win_period=float(rng.uniform(2.0, 3.5)),
            )
        )
        z += length
    return Side(x=x, segments=segs, starts=np.array([s.start for s in segs], np.float64), light=light)


def make_layout(rng: np.random.Generator) -> Layout:
    lanes = int(rng.integers(2, 5))
    lane_w = float(rng.uniform(3.0, 3.7))
    road_w = lanes * lane_w
    sw_l, sw_r = (float(v) for v in rng.uniform(1.5, 4.5, 2))
    verge_l, verge_r = (float(v) for v in rng.choice([0.0, 0.0, 1.0, 2.5, 4.0], 2) * rng.uniform(0.7, 1.3, 2))
    sun_left = rng.random() < 0.5
    sides = []
    for sign, sw, verge in ((-1, sw_l, verge_l), (1, sw_r, verge_r)):
        if rng.random() < 0.85:
            light = 1.15 if (sign < 0) == sun_left else 0.75
            sides.append(_make_side(rng, sign * (road_w / 2 + sw + verge + 0.5), light))
    z_far = float(rng.uniform(45, 90))
    n_blocks = 48
    kind = rng.choice([BUILDING, BUILDING, VEGETATION, SKY], n_blocks)
    tops = np.where(kind == VEGETATION, rng.uniform(4, 12, n_blocks), rng.uniform(6, 40, n_blocks))
    colors = np.stack([_rgb(rng, _WALLS[i], 20) for i in rng.integers(len(_WALLS), size=n_blocks)])
    cam_x = float(rng.uniform(-road_w / 2 + 1.2, road_w / 2 - 1.2))
    # the draws below happen in this order, so a seed always makes the same scene
    actors = _trees(rng, road_w, ((-1, sw_l, verge_l), (1, sw_r, verge_r)))
    actors += _vehicles(rng, lanes, lane_w, road_w, z_far)
    actors += _pedestrians(rng, road_w, sw_l, sw_r)
    sky_top, sky_bottom = _sky(rng)
    road_grey = float(rng.uniform(55, 115))
    yellow = rng.random() < 0.3
    return Layout(
        horizon=float(rng.uniform(0.36, 0.52)),
        vx=float(rng.uniform(0.38, 0.62)),
        focal=float(rng.uniform(0.6, 0.95)),
        cam_h=float(rng.uniform(1.2, 1.9)),
        cam_x=cam_x,
        cam_speed=float(rng.uniform(0, 9)),
        road_w=road_w,
        lanes=lanes,
        lane_w=lane_w,
        sw_left=sw_l,
        sw_right=sw_r,
        verge_left=verge_l,
        verge_right=verge_r,
        z_far=z_far,
        sides=sides,
        backdrop_tops=tops.astype(np.float32),
        backdrop_kind=kind,
        backdrop_colors=colors,
        actors=actors,
        sky_top=sky_top,
        sky_bottom=sky_bottom,
        clouds=float(rng.uniform(0, 0.7)),
        road_rgb=_rgb(rng, (road_grey, road_grey, road_grey + 5), 6),
        sidewalk_rgb=_rgb(rng, _SIDEWALKS[rng.integers(len(_SIDEWALKS))], 15),
        grass_rgb=_rgb(rng, _GREENS[rng.integers(len(_GREENS))], 15),
        leaf_rgb=_rgb(rng, _GREENS[rng.integers(len(_GREENS))], 15),
        marking_rgb=_rgb(rng, (225, 190, 40) if yellow else (235, 235, 230), 15),
        marking_w=float(rng.uniform(0.15, 0.3)),
        dash_len=float(rng.uniform(2.5, 4.5)),
        dash_period=float(rng.uniform(8, 13)),
        edge_lines=bool(rng.random() < 0.7),
        tile=float(rng.uniform(0.4, 0.9)),
        shadow_x=float(rng.uniform(-road_w, road_w)) if rng.random() < 0.5 else -1e9,
        shadow_gain=float(rng.uniform(0.45, 0.75)),
        brightness=float(rng.uniform(0.6, 1.3)),
        tint=rng.uniform(0.88, 1.12, 3).astype(np.float32),
        gamma=float(rng.uniform(0.8, 1.25)),
        noise=float(rng.uniform(1.5, 8)),
        blur=bool(rng.random() < 0.3),
        drift=float(rng.uniform(0.1, 0.5)),
    )


def _trees(rng: np.random.Generator, road_w: float, verges: tuple) -> list[Actor]:
    """Trees on the verges (or the sidewalk's outer edge when there is no verge)."""
    actors = []
    for sign, sw, verge in verges:
        n = int(rng.integers(0, 14))
        for _ in range(n):
            lateral = road_w / 2 + sw + (verge / 2 if verge > 0.5 else -0.6) + rng.uniform(-0.3, 0.3)
            crown = float(rng.uniform(1.2, 3.2))
            actors.append(
                Actor(
                    kind=VEGETATION,
                    x=sign * lateral,
                    z0=float(rng.uniform(0, CYCLE)),
                    speed=0.0,
                    size=(float(rng.uniform(1.8, 4.0)), crown, float(rng.uniform(0.15, 0.35))),
                    colors=[_rgb(rng, (80, 60, 40), 20)],
                    phase=float(rng.uniform(0, 2 * math.pi)),
                    style=int(rng.integers(2, 6)),  # crown blobs
                )
            )
    return actors


def _vehicles(
    rng: np.random.Generator, lanes: int, lane_w: float, road_w: float, z_far: float
) -> list[Actor]:
    """Vehicles: one speed per lane so they never drive through each other."""
    actors = []
    for lane in range(lanes):
        oncoming = lane < lanes // 2
        lane_speed = float(rng.uniform(3, 14)) * (-1 if oncoming else 1)
        n = int(rng.choice([0, 1, 1, 2, 2, 3]))
        zs = np.sort(rng.uniform(0, z_far + 10, n))
        for k, z in enumerate(zs):
            if k and z - zs[k - 1] < 9:
                continue
            big = rng.random() < 0.18
            w = float(rng.uniform(2.3, 2.6) if big else rng.uniform(1.65, 2.0))
            h = float(rng.uniform(2.6, 3.4) if big else rng.uniform(1.35, 1.65))
            actors.append(
                Actor(
                    kind=VEHICLE,
                    x=-road_w / 2 + (lane + 0.5) * lane_w + float(rng.uniform(-0.3, 0.3)),
                    z0=float(z),
                    speed=lane_speed,
                    size=(w, h),
                    colors=[_rgb(rng, _CARS[rng.integers(len(_CARS))], 20), _rgb(rng, (35, 40, 50), 10)],
                    style=1 if big else 0,
                )
            )
    return actors


def _pedestrians(rng: np.random.Generator, road_w: float, sw_l: float, sw_r: float) -> list[Actor]:
    """Pedestrians on the sidewalks."""
    actors = []
    for _ in range(int(rng.choice([0, 1, 2, 3, 4, 5, 6]))):
        sign = -1 if rng.random() < 0.5 else 1
        sw = sw_l if sign < 0 else sw_r
        actors.append(
            Actor(
                kind=PEDESTRIAN,
                x=sign * (road_w / 2 + float(rng.uniform(0.4, max(0.5, sw - 0.3)))),
                z0=float(rng.uniform(*PED_RANGE)),
                speed=float(rng.uniform(0.9, 1.6)) * (-1 if rng.random() < 0.5 else 1),
                size=(float(rng.uniform(1.5, 1.95)),),
                colors=[
                    _rgb(rng, _SKIN[rng.integers(len(_SKIN))], 10),
                    rng.uniform(20, 235, 3).astype(np.float32),
                    _rgb(rng, (50, 50, 70), 30),
                ],
                phase=float(rng.uniform(0, 2 * math.pi)),
            )
        )

    return actors


def _sky(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The sky's top and bottom colours, by weather."""
    weather = rng.choice(["clear", "clear", "overcast", "dusk"])
    if weather == "clear":
        sky_top, sky_bottom = _rgb(rng, (60, 120, 210), 25), _rgb(rng, (170, 200, 235), 20)
    elif weather == "overcast":
        g = float(rng.uniform(150, 210))
        sky_top, sky_bottom = _rgb(rng, (g - 15, g - 10, g), 8), _rgb(rng, (g + 20, g + 20, g + 22), 8)
    else:
        sky_top, sky_bottom = _rgb(rng, (70, 80, 140), 20), _rgb(rng, (240, 160, 100), 25)
    return sky_top, sky_bottom
