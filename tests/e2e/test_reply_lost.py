"""The hub commits a batch and dies before its reply reaches the agent.

A small TCP relay sits between agent and hub. The hub answers only after the
batch is durably stored, so the first byte of a reply proves the commit; at
that moment the relay kills the hub with SIGKILL and drops the agent's
connection without passing the reply on. The agent must retry the batch,
and the restarted hub must acknowledge it without storing it twice."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
from collections.abc import Callable

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, wait_http
from tests.e2e.test_delivery import stamps_at_hub, stream_of
from tests.e2e.test_hub_ingest import HubProcess


class KillOnReply:
    """Relay agent -> hub; on the first reply to an ingest request, kill the hub."""

    def __init__(self, hub_port: int, kill: Callable[[], None]) -> None:
        self.hub_port = hub_port
        self.kill = kill
        self.armed = threading.Event()
        self.swallowed = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.relay, args=(client,), daemon=True).start()

    def relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.hub_port), timeout=10)
        except OSError:
            client.close()  # hub down: the agent sees a refused/closed connection
            return
        sent_ingest = threading.Event()

        def forward() -> None:
            try:
                while data := client.recv(65536):
                    if b"POST /v1/ingest" in data:
                        sent_ingest.set()
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=forward, daemon=True).start()
        try:
            while data := upstream.recv(65536):
                if sent_ingest.is_set() and self.armed.is_set():
                    self.armed.clear()
                    self.kill()  # the commit happened; the reply never leaves
                    self.swallowed += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                # shutdown, not just close: the forward thread is blocked in recv
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self.listener.close()


def test_a_reply_lost_after_commit_is_retried_and_not_stored_twice(tmp_path):
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    relay = KillOnReply(hub.port, lambda: hub.proc.send_signal(signal.SIGKILL))
    api = free_port()
    config = agent_config(
        tmp_path,
        f'host_id = "edge-7"\n[hub]\nurl = "http://127.0.0.1:{relay.port}"\n'
        f'token = "{hub.token("edge-7")}"\nmax_backoff = "500ms"\n'
        '[buffer]\nflush_interval = "200ms"\n',
        port=api,
    )
    agent = Agent(tmp_path, config)

    def shipper():
        return json.loads(wait_http(f"http://127.0.0.1:{api}/status"))["shipper"]

    try:
        agent.notify.wait("READY=1")
        wait_for(lambda: shipper()["acked_seq"] > 0, what="a first delivery")
        relay.armed.set()
        wait_for(lambda: relay.swallowed == 1, what="a reply swallowed after the commit")
        hub.proc.wait()
        held = shipper()["acked_seq"]  # the agent never heard the hub say yes
        wait_for(lambda: shipper()["retries"] >= 1, what="the agent to retry")

        hub.log.close()
        hub = HubProcess(tmp_path / "hubside", hub.port)  # same data, same secret
        wait_for(lambda: shipper()["acked_seq"] > held, what="the retried batch acknowledged")
        stream = stream_of(hub)
        assert stream["lost"] == 0
        stamps = stamps_at_hub(hub)
        assert len(stamps) == len(set(stamps)), "the committed batch was stored twice"
        assert stamps == sorted(stamps)
    finally:
        relay.close()
        assert agent.stop() == 0
        if hub.proc.poll() is None:
            hub.stop()
