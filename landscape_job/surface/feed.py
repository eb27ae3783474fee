"""How a split's batches reach the device: resident there, or streamed from pinned host memory.

Keeping the data on the device makes a grid point one forward pass and nothing else, so
it is the default whenever the data fits. A data set larger than the device's free memory
stays in pinned host memory instead, and each batch is copied with ``non_blocking`` on a
side CUDA stream while the previous batch is being computed (double buffering), so the
copy hides behind compute rather than adding to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Union

import torch

from landscape_job.datasets.builtin import Split

#: The data is kept resident when it needs at most this share of the device's free memory;
#: the rest is left for activations (times points_per_forward) and the stacked parameters.
RESIDENT_SHARE = 0.5

#: A batch's model inputs: one tensor, or for token data ``{"input_ids", "attention_mask"}`` (the
#: keyword arguments of a Hugging Face model, as its DataLoaders give them).
Inputs = Union[torch.Tensor, dict[str, torch.Tensor]]
Batch = tuple[Inputs, torch.Tensor]


def _inputs(ids: torch.Tensor, mask: torch.Tensor | None) -> Inputs:
    return ids if mask is None else {"input_ids": ids, "attention_mask": mask}


def split_bytes(splits: list[Split], dtype: torch.dtype) -> int:
    """Bytes the splits take on the device in the evaluation dtype."""
    item = torch.empty((), dtype=dtype).element_size()
    return sum(s.inputs.numel() * (item if s.inputs.is_floating_point() else s.inputs.element_size())
               + s.labels.numel() * s.labels.element_size()
               + (0 if s.attention_mask is None else s.attention_mask.numel() * s.attention_mask.element_size())
               for s in splits)


def decide_resident(setting: str | bool, data_bytes: int, free_bytes: int | None) -> bool:
    """``compute.data_on_device``: auto keeps the data resident when it takes at most
    RESIDENT_SHARE of the free device memory; ``free_bytes`` None means host memory (CPU),
    where the data is always resident."""
    if setting != "auto":
        return bool(setting)
    if free_bytes is None:
        return True
    return data_bytes <= RESIDENT_SHARE * free_bytes


def free_device_bytes(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def _layout(inputs: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """NHWC for image batches; other inputs have no channels dimension to move and stay as they are."""
    return inputs.contiguous(memory_format=torch.channels_last) if channels_last and inputs.dim() == 4 else inputs


@dataclass
class ResidentSplit:
    """A split held on the device: batches are views, nothing moves per point."""

    name: str
    inputs: torch.Tensor
    labels: torch.Tensor
    #: Token data's attention mask (then batches are dicts); None otherwise.
    mask: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, self.size, batch_size):
            end = start + batch_size
            yield (_inputs(self.inputs[start:end], None if self.mask is None else self.mask[start:end]),
                   self.labels[start:end])


@dataclass
class StreamedSplit:
    """A split held in host memory (pinned when the device is CUDA), copied batch by batch."""

    name: str
    inputs: torch.Tensor
    labels: torch.Tensor
    device: torch.device
    mask: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        starts = range(0, self.size, batch_size)
        if self.mask is not None:
            # Token batches are small next to the model's compute: copied plainly, no side stream.
            for start in starts:
                end = start + batch_size
                yield (_inputs(self.inputs[start:end].to(self.device), self.mask[start:end].to(self.device)),
                       self.labels[start:end].to(self.device))
            return
        if self.device.type != "cuda":
            # No copy engine to overlap with: copy each batch, so that this path computes on
            # the same values as the resident one and is tested on CPU.
            for start in starts:
                yield (self.inputs[start:start + batch_size].to(self.device, copy=True),
                       self.labels[start:start + batch_size].to(self.device, copy=True))
            return
        yield from self._double_buffered(starts, batch_size)

    def _double_buffered(self, starts: range, batch_size: int) -> Iterator[Batch]:
        """Batch i+1 is copied on a side stream while the caller computes on batch i."""
        side = torch.cuda.Stream(self.device)
        main = torch.cuda.current_stream(self.device)

        def issue(start: int) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event]:
            with torch.cuda.stream(side):
                x = self.inputs[start:start + batch_size].to(self.device, non_blocking=True)
                y = self.labels[start:start + batch_size].to(self.device, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(side)
            return x, y, ready

        pending = issue(starts[0]) if len(starts) else None
        for i in range(len(starts)):
            assert pending is not None
            x, y, ready = pending
            main.wait_event(ready)
            # Tell the allocator the main stream uses these, so they are not reused too early.
            x.record_stream(main)
            y.record_stream(main)
            pending = issue(starts[i + 1]) if i + 1 < len(starts) else None
            yield x, y


def place_split(split: Split, dtype: torch.dtype, device: torch.device, resident: bool,
                channels_last: bool) -> ResidentSplit | StreamedSplit:
    """Converts a split once to the evaluation dtype and layout, on the device or pinned on the host.
    Token ids stay integers (and their mask comes along)."""
    if split.attention_mask is not None:
        if resident:
            return ResidentSplit(split.name, split.inputs.to(device), split.labels.to(device),
                                 split.attention_mask.to(device))
        return StreamedSplit(split.name, split.inputs, split.labels, device, split.attention_mask)
    if resident:
        return ResidentSplit(split.name, _layout(split.inputs.to(device, dtype), channels_last),
                             split.labels.to(device))
    inputs = _layout(split.inputs.to(dtype), channels_last)
    labels = split.labels
    if device.type == "cuda":
        inputs, labels = inputs.pin_memory(), labels.pin_memory()
    return StreamedSplit(split.name, inputs, labels, device)


def place_splits(splits: list[Split], dtype: torch.dtype, device: torch.device, setting: str | bool,
                 channels_last: bool) -> tuple[bool, list[ResidentSplit | StreamedSplit]]:
    """``compute.data_on_device`` decided for these splits on this device, and the splits placed so."""
    resident = decide_resident(setting, split_bytes(splits, dtype), free_device_bytes(device))
    return resident, [place_split(s, dtype, device, resident, channels_last) for s in splits]
