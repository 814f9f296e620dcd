"""The layer inventory: every quantizable layer with its shapes, MACs, component and data flow.

Weight layers (Linear, Conv2d, ConvTranspose2d) and the attention matmul sites are recorded by
hooks during a real forward at the model's image size: the image path on one photograph with one
point prompt, and for SAM2 also one memory-conditioned video step (the memory attention and
memory encoder only run on video). MACs are per image and prompt (per frame for the memory path).
Data-flow edges come from walking the autograd graph back from each layer's input to the nearest
quantizable layers' outputs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx
import torch
from torch import nn

from profiling.attention import SITE_SUFFIXES, attention_macs, attention_modules, projections
from profiling.models import LoadedModel

__all__ = ["LayerInfo", "Inventory", "build_inventory", "component_of", "WEIGHT_KINDS"]

WEIGHT_KINDS: dict[type, str] = {
    nn.Linear: "linear",
    nn.Conv2d: "conv2d",
    nn.ConvTranspose2d: "conv_transpose2d",
}
_COMPONENTS = [
    ("image_encoder", "image_encoder"),
    ("sam_prompt_encoder", "prompt_encoder"),
    ("prompt_encoder", "prompt_encoder"),
    ("sam_mask_decoder", "mask_decoder"),
    ("mask_decoder", "mask_decoder"),
    ("memory_attention", "memory_attention"),
    ("memory_encoder", "memory_encoder"),
    ("obj_ptr", "memory_encoder"),
    ("mask_downsample", "memory_encoder"),
]


def component_of(name: str) -> str:
    """Which component a fully qualified name belongs to."""
    for prefix, comp in _COMPONENTS:
        if name.startswith(prefix):
            return comp
    return "other"


@dataclass
class LayerInfo:
    """One quantizable layer or activation-only site."""

    name: str
    kind: str
    component: str
    params: int = 0
    weight_numel: int = 0
    channels: int = 0
    macs: int = 0
    in_shape: list[int] | None = None
    out_shape: list[int] | None = None
    ran: bool = False


@dataclass
class Inventory:
    """All quantizable layers of a model, their execution order and data-flow graph."""

    model: str
    image_size: int
    random_weights: bool
    total_params: int
    layers: list[LayerInfo]
    pairs: list[tuple[str, str]]
    graph: nx.DiGraph = field(repr=False)
    # what a packed artifact stores besides the layers' weights and biases: every floating-point
    # element of the state dict (parameters and persistent buffers, e.g. a positional encoding's
    # matrix) and the bytes of its non-float tensors (stored as they are)
    state_float_numel: int = 0
    state_other_bytes: int = 0
    resized_from: dict[str, Any] | None = None  # see profiling.models.resize

    def by_name(self) -> dict[str, LayerInfo]:
        return {layer.name: layer for layer in self.layers}

    def to_json(self) -> dict[str, Any]:
        keep = ("name", "kind", "component", "params", "macs", "in_shape", "out_shape")
        return {
            "model": self.model,
            "image_size": self.image_size,
            "random_weights": self.random_weights,
            "total_params": self.total_params,
            "state_float_numel": self.state_float_numel,
            "state_other_bytes": self.state_other_bytes,
            "resized_from": self.resized_from,
            "layers": [
                {k: v for k, v in asdict(x).items() if k in keep}
                | {"weight_numel": x.weight_numel, "channels": x.channels, "ran": x.ran}
                for x in self.layers
            ],
            "pairs": [list(p) for p in self.pairs],
            "edges": [list(e) for e in self.graph.edges],
        }


class _Recorder:
    """Hooks that record shapes, MACs, execution order and autograd producer nodes."""

    def __init__(self, model: nn.Module) -> None:
        self.infos: dict[str, LayerInfo] = {}
        self.order: list[str] = []
        self.producers: dict[Any, str] = {}  # autograd node -> layer name
        self.inputs: dict[str, list[Any]] = {}  # layer -> autograd nodes of its inputs
        self.count_macs = True
        self.frozen: set[str] = set()  # layers whose MACs are final
        self.handles: list[Any] = []
        self.attn = attention_modules(model)
        for name, mod in model.named_modules():
            kind = WEIGHT_KINDS.get(type(mod))
            if kind is not None:
                self._add_weight_layer(name, mod, kind)
        for name, mod in self.attn.items():
            for suffix in SITE_SUFFIXES:
                self.infos[f"{name}.{suffix}"] = LayerInfo(
                    f"{name}.{suffix}", f"matmul_{suffix.split('_')[0]}", component_of(name)
                )
            self.handles.append(mod.register_forward_hook(self._attn_hook(name), with_kwargs=True))

    def _add_weight_layer(self, name: str, mod: Any, kind: str) -> None:
        w = mod.weight
        channels = w.shape[1] if kind == "conv_transpose2d" else w.shape[0]
        params = sum(p.numel() for p in mod.parameters(recurse=False))
        self.infos[name] = LayerInfo(name, kind, component_of(name), params, w.numel(), channels)
        self.handles.append(mod.register_forward_pre_hook(self._pre_hook(name)))
        self.handles.append(mod.register_forward_hook(self._post_hook(name, mod)))

    def _pre_hook(self, name: str) -> Any:
        def hook(mod: nn.Module, args: tuple) -> None:
            nodes = [a.grad_fn for a in args if isinstance(a, torch.Tensor) and a.grad_fn]
            self.inputs.setdefault(name, []).extend(nodes)

        return hook

    def _post_hook(self, name: str, mod: nn.Module) -> Any:
        def hook(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
            info = self.infos[name]
            if not info.ran:
                info.ran, info.in_shape = True, list(args[0].shape)
                info.out_shape = list(out.shape)
                self.order.append(name)
            if self.count_macs and name not in self.frozen:
                info.macs += _weight_macs(mod, args[0], out)
            if out.grad_fn is not None:
                self.producers[out.grad_fn] = name

        return hook

    def _attn_hook(self, name: str) -> Any:
        def hook(mod: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
            macs = attention_macs(mod, args, kwargs, out)
            for suffix in SITE_SUFFIXES:
                info = self.infos[f"{name}.{suffix}"]
                if not info.ran:
                    info.ran = True
                if self.count_macs and info.name not in self.frozen:
                    info.macs += macs

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def _weight_macs(mod: Any, x: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(mod, nn.Linear):
        return int(out.numel() * mod.in_features)
    if isinstance(mod, nn.ConvTranspose2d):
        kh, kw = mod.kernel_size
        return int(x.numel() * (mod.out_channels // mod.groups) * kh * kw)
    kh, kw = mod.kernel_size  # Conv2d
    return int(out.numel() * (mod.in_channels // mod.groups) * kh * kw)


def _producers_of(start: list[Any], producers: dict[Any, str]) -> set[str]:
    """Walk the autograd graph back from ``start`` to the nearest layer outputs."""
    found: set[str] = set()
    seen: set[int] = set()
    queue = deque(start)
    while queue:
        node = queue.popleft()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node in producers:
            found.add(producers[node])
            continue
        queue.extend(n for n, _ in node.next_functions)
    return found


def _drive(loaded: LoadedModel, rec: _Recorder) -> None:
    """The image path on one photograph and prompt; for SAM2 one memory-conditioned step."""
    import skimage.data

    from profiling.models.adapter import Prompts, TaskAdapter

    image = skimage.data.astronaut()
    prompt = Prompts(
        points=torch.tensor([[[256.0, 200.0]]]), labels=torch.ones(1, 1, dtype=torch.int32)
    )
    adapter = TaskAdapter(loaded)
    model: Any = loaded.module
    pixels = adapter.preprocess(image)
    kept: dict[str, Any] = {}
    if loaded.family == "sam2":  # keep the image path's backbone output for the video step
        run = model.forward_image
        model.forward_image = lambda p: kept.setdefault("out", run(p))
    try:
        with torch.enable_grad():
            adapter.decode(adapter.embed(pixels), prompt, image.shape[:2])
    finally:
        if loaded.family == "sam2":
            del model.forward_image
    with torch.enable_grad():
        if loaded.family == "sam2":
            from profiling.models.video_step import track_frames

            ran_on_images = {n for n, i in rec.infos.items() if i.ran}
            rec.count_macs = False
            coords = adapter.transform_coords(prompt.points, image.shape[:2])  # type: ignore[arg-type]
            labels = prompt.labels
            assert labels is not None
            track_frames(
                loaded.module,
                pixels,
                coords,
                labels,
                n_frames=2,
                before_last=lambda: _count_only(rec, ran_on_images),
                backbone_out=kept["out"],  # the same pixels: no second encoder run
            )


def _count_only(rec: _Recorder, skip: set[str]) -> None:
    """From here on, count MACs only for layers that did not run on the image path."""
    rec.count_macs = True
    rec.frozen = skip


def _graph(rec: _Recorder, attn: dict[str, nn.Module]) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(rec.infos)
    for name, nodes in rec.inputs.items():
        for src in _producers_of(nodes, rec.producers):
            g.add_edge(src, name)
    for aname, mod in attn.items():
        roles = {r: [f"{aname}.{c}" for c in cs] for r, cs in projections(mod).items()}
        qk, sv = f"{aname}.qk_matmul", f"{aname}.sv_matmul"
        for src in roles["q"] + roles["k"] + roles["v"]:
            for dst in roles["out"]:
                if g.has_edge(src, dst):
                    g.remove_edge(src, dst)
        g.add_edges_from([(s, qk) for s in roles["q"] + roles["k"]])
        g.add_edges_from([(s, sv) for s in roles["v"]] + [(qk, sv)])
        g.add_edges_from([(sv, d) for d in roles["out"]])
    return g


def _ordered(rec: _Recorder, attn: dict[str, nn.Module]) -> list[str]:
    """Execution order, with each attention's two sites just before its output projection."""
    out_proj = {f"{a}.{projections(m)['out'][0]}": a for a, m in attn.items()}
    order: list[str] = []
    for name in rec.order:
        if name in out_proj and rec.infos[f"{out_proj[name]}.qk_matmul"].ran:
            order += [f"{out_proj[name]}.{s}" for s in SITE_SUFFIXES]
        order.append(name)
    return order


def _state_sizes(model: nn.Module) -> tuple[int, int]:
    """Floating-point elements of the state dict, and bytes of its other tensors."""
    floats = other = 0
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            floats += tensor.numel()
        else:
            other += tensor.numel() * tensor.element_size()
    return floats, other


def build_inventory(loaded: LoadedModel) -> Inventory:
    """Run the model once with hooks and return its inventory."""
    rec = _Recorder(loaded.module)
    try:
        _drive(loaded, rec)
    finally:
        rec.remove()
    order = _ordered(rec, rec.attn)
    layers = [rec.infos[n] for n in order] + [i for n, i in rec.infos.items() if not i.ran]
    floats, other = _state_sizes(loaded.module)
    return Inventory(
        model=loaded.spec.name,
        image_size=loaded.spec.size,
        random_weights=loaded.random_weights,
        total_params=loaded.num_params,
        layers=layers,
        pairs=list(zip(order, order[1:])),
        graph=_graph(rec, rec.attn),
        state_float_numel=floats,
        state_other_bytes=other,
        resized_from=loaded.resized_from,
    )
