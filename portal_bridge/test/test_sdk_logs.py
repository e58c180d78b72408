"""SDK log lines that never apply are demoted to DEBUG by their exact text; others pass unchanged."""

import logging

from portal_bridge.portal.room.sdk_logs import demote_sdk_noise, demoted_counts


def test_only_the_listed_sdk_lines_are_demoted(caplog):
    demote_sdk_noise()
    demote_sdk_noise()  # idempotent: one filter
    sdk = logging.getLogger('livekit')
    assert sum(type(f).__name__ == '_Demote' for f in sdk.filters) == 1
    before = demoted_counts().get('Attempted to drop unknown FFI handle', 0)
    with caplog.at_level(logging.DEBUG, logger='livekit'):
        sdk.warning('%s:%s:%s - %s', 'livekit_ffi::server', 1, 'm', 'Attempted to drop unknown FFI handle: 42')
        sdk.warning('%s:%s:%s - %s', 'livekit_ffi::server', 2, 'm', 'failed to send dc_event')
    levels = {r.getMessage().rsplit(' - ', 1)[1]: r.levelname for r in caplog.records}
    assert levels == {'Attempted to drop unknown FFI handle: 42': 'DEBUG', 'failed to send dc_event': 'WARNING'}
    assert demoted_counts()['Attempted to drop unknown FFI handle'] == before + 1


def test_a_failed_join_is_said_once_by_the_session_not_four_times_by_the_sdk(caplog):
    demote_sdk_noise()
    sdk = logging.getLogger('livekit')
    refused = 'Connection("IO error: Connection refused (os error 111)")'
    with caplog.at_level(logging.DEBUG, logger='livekit'):
        sdk.warning('livekit_signaling:583:livekit_signaling - signal connection failed on v1 path: %s', refused)
        sdk.warning(
            'livekit::rtc_engine:564:livekit::rtc_engine - failed to connect: Signal(%s), retrying... (1/3)', refused
        )
        sdk.warning(
            'livekit_ffi::room_apis::server::room:355:livekit_ffi::room_apis::server::room - error while connecting '
            'to a room: engine: signal failure: transport connection error: IO error: Connection refused (os error 111)'
        )
        sdk.warning('livekit_ffi::server - signal connection lost')  # not a join failure: stays a warning
    assert [r.levelname for r in caplog.records] == ['DEBUG', 'DEBUG', 'DEBUG', 'WARNING']


def test_a_demoted_line_does_not_reach_a_warning_handler():
    demote_sdk_noise()
    seen = []

    class Handler(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Handler(level=logging.WARNING)
    sdk = logging.getLogger('livekit')
    sdk.addHandler(handler)
    try:
        sdk.warning('Attempted to drop unknown FFI handle: 7')
        sdk.warning('something that applies')
    finally:
        sdk.removeHandler(handler)
    assert seen == ['something that applies']
