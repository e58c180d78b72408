"""The robot's WebRTC video out: one SDK video source per camera track, published and captured.

Owns the sources of the contract's WebRTC tracks for one connection: publication with the
contract's codec, bitrate and the ``user_timestamp`` frame metadata (the trailer that carries
Portal's capture timestamp), the capture itself with its spacing, and closing the sources at
teardown. Captures come from any thread (a camera callback); publication and closing run on the
session's loop. Frame video (byte streams) is sent by the robot itself through its send queues.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from livekit import rtc

from ..errors import NotConnected, RoomError
from ..wire.contract import WireContract
from .sdk_video import new_video_source

__all__ = ['DEGRADATION', 'MIN_CAPTURE_GAP_S', 'VideoSources']

MIN_CAPTURE_GAP_S = 0.001  # between two captures on one WebRTC source (see VideoSources.capture)

# rtc.TrackPublishOptions' degradation preference by its short name
DEGRADATION = {
    name: rtc.TrackPublishOptions.DESCRIPTOR.fields_by_name['degradation_preference']
    .enum_type.values_by_name[f'DEGRADATION_PREFERENCE_{name.upper()}']
    .number
    for name in ('maintain_framerate_and_resolution', 'maintain_framerate', 'maintain_resolution', 'balanced')
}


class VideoSources:
    """The WebRTC camera tracks of one robot; ``capture`` is safe from any thread."""

    def __init__(self, contract: WireContract, degradation: str) -> None:
        if degradation not in DEGRADATION:
            raise ValueError(f'video_degradation must be one of {", ".join(DEGRADATION)}')
        self.contract = contract
        self.degradation = degradation
        self._sources: dict[str, rtc.VideoSource] = {}
        self._locks = {spec.name: threading.Lock() for spec in contract.webrtc_videos}
        self._last = {spec.name: 0.0 for spec in contract.webrtc_videos}

    async def publish(self, lp: rtc.LocalParticipant, on_published: Callable[[str, str], Any]) -> None:
        """Publish every WebRTC track of the contract (on the loop); raises what publish_track raised."""
        for spec in self.contract.webrtc_videos:
            source = new_video_source(640, 480)  # no placeholder frames: silence until a capture
            track = rtc.LocalVideoTrack.create_video_track(spec.name, source)
            options = rtc.TrackPublishOptions(
                video_codec=getattr(rtc.VideoCodec, spec.codec.spec.sdk_codec),
                simulcast=False,
                video_encoding=rtc.VideoEncoding(max_framerate=2 * self.contract.fps, max_bitrate=spec.bitrate_bps),
                frame_metadata_features=[rtc.FrameMetadataFeature.FMF_USER_TIMESTAMP],
                degradation_preference=DEGRADATION[self.degradation],
            )
            try:
                await lp.publish_track(track, options)
            except Exception as exc:
                await source.aclose()
                raise RoomError(f"could not publish video track '{spec.name}': {exc}") from exc
            self._sources[spec.name] = source
            on_published(spec.name, spec.codec.name)

    def capture(self, track: str, frame: rtc.VideoFrame, timestamp_us: int) -> None:
        """Hand one frame to the track's encoder with its Portal timestamp in the trailer.

        Two captures on one source within microseconds of each other reach the receiver as one
        frame: the first picture carrying the second's user_timestamp (measured against
        livekit-portal's operator; none with 1 ms between them). A camera thread catching up on
        queued images does exactly that, so captures on a track are spaced by MIN_CAPTURE_GAP_S.
        """
        source = self._sources.get(track)
        if source is None:
            raise NotConnected('robot is not connected')
        with self._locks[track]:
            wait = self._last[track] + MIN_CAPTURE_GAP_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            source.capture_frame(frame, metadata=rtc.FrameMetadata(user_timestamp=timestamp_us))
            self._last[track] = time.monotonic()

    async def close(self) -> None:
        """Close every source (on the loop, at teardown); captures then raise NotConnected."""
        sources, self._sources = self._sources, {}
        for source in sources.values():
            try:
                await source.aclose()
            except Exception:
                pass
