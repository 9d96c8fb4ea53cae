"""Plays the demo conversation against a running stack and checks each step was observed."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from pydantic import ValidationError
from realtime import AsyncRealtimeClient
from rich.console import Console
from supabase import AsyncClient, AsyncClientOptions, acreate_client
from supabase_auth.errors import AuthError

from bridge.demo import script
from bridge.demo.customer import Phone, WebhookRefused
from bridge.demo.view import LiveView, PlainView, View
from bridge.demo.watch import DELIVERED, SETTLED, Message, Watch
from bridge.settings import Settings

READING_PAUSE = 0.5  # the customer reads the answer before writing again
TYPING_GAP = 0.4  # between the messages of a burst, each its own webhook
WORKER_HINT = "is the worker running? (make dev runs it)"


@dataclass(frozen=True)
class Options:
    bridge_url: str
    phone_number_id: str
    timeout: float
    plain: bool


class Missed(Exception):
    """A step's expectation was not observed in time; the message says what to check."""


def main(options: Options) -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        sys.stderr.write(f"bridge demo: the settings are not valid: {exc}\n")
        return 2
    if settings.WHATSAPP_APP_SECRET is None:
        sys.stderr.write(
            "bridge demo: WHATSAPP_APP_SECRET is not set: the demo signs its webhooks with the "
            "API's app secret (.env.example has the local one)\n"
        )
        return 2
    return asyncio.run(_main(options, settings))


async def _main(options: Options, settings: Settings) -> int:
    view: View
    if options.plain:
        view = PlainView(out=sys.stdout)
    else:
        live = LiveView(console=Console())
        live.start()
        view = live
    try:
        await Demo(options, settings, view).play()
    except Missed as exc:
        view.result(False, str(exc))
        return 1
    finally:
        view.close()
    return 0


class Demo:
    def __init__(self, options: Options, settings: Settings, view: View) -> None:
        self.options = options
        self.settings = settings
        self.view = view
        self.customer = script.new_customer()
        self.supabase: AsyncClient

    async def play(self) -> None:
        key = self.settings.SUPABASE_SERVICE_ROLE_KEY.get_secret_value()
        async with httpx.AsyncClient(timeout=10) as http:
            await self._reachable(http)
            supabase = await acreate_client(
                self.settings.SUPABASE_URL,
                key,
                options=AsyncClientOptions(
                    auto_refresh_token=False, persist_session=False, httpx_client=http
                ),
            )
            realtime = AsyncRealtimeClient(
                f"{self.settings.SUPABASE_URL.rstrip('/')}/realtime/v1", key, auto_reconnect=False
            )
            self.supabase = supabase
            watch = Watch(supabase, realtime, self.view)
            try:
                await self._play(http, realtime, watch)
            finally:
                await watch.close()
                with contextlib.suppress(Exception):
                    await realtime.close()

    async def _reachable(self, http: httpx.AsyncClient) -> None:
        for name, url, fix in (
            ("the webhook API", f"{self.options.bridge_url.rstrip('/')}/healthz", "--bridge-url"),
            ("Supabase", f"{self.settings.SUPABASE_URL.rstrip('/')}/rest/v1/", "SUPABASE_URL"),
        ):
            try:
                await http.get(url, timeout=5)
            except httpx.HTTPError as exc:
                raise Missed(
                    f"cannot reach {name} at {url} ({type(exc).__name__}): is the stack running "
                    f"(make dev)? Or check {fix}."
                ) from None

    async def _play(
        self, http: httpx.AsyncClient, realtime: AsyncRealtimeClient, watch: Watch
    ) -> None:
        opts = self.options
        channels = await watch.select(
            "whatsapp_channels", "workspace_id", "phone_number_id", opts.phone_number_id
        )
        if not channels:
            raise Missed(
                f"no WhatsApp channel has phone_number_id {opts.phone_number_id}: is the demo "
                "seed loaded (bridge db apply --seed), or pass --phone-number-id"
            )
        private = await watch.typing_private(str(channels[0]["workspace_id"]))
        await realtime.connect()  # so joining the conversation's channel is one round trip
        phone = Phone(
            http,
            bridge_url=opts.bridge_url,
            app_secret=self.settings.WHATSAPP_APP_SECRET.get_secret_value()
            if self.settings.WHATSAPP_APP_SECRET
            else "",
            phone_number_id=opts.phone_number_id,
            customer=self.customer,
        )
        self.view.note(f"a new customer: {self.customer.name}, +{self.customer.phone}")
        steps = script.conversation(self.customer)
        for number, step in enumerate(steps, 1):
            self.view.step(number, len(steps), step.title)
            checker = StepCheck(number, step, watch, self.view, opts.timeout)
            await checker.play(phone, private)
            if number < len(steps):
                await asyncio.sleep(READING_PAUSE)
        await self._statuses(watch)
        await self._handoff(watch)
        self.view.result(True, f"all {len(steps)} steps observed")

    async def _statuses(self, watch: Watch) -> None:
        self.view.waiting("a delivery status beyond sent")
        beyond = ("delivered", "read", "played")
        if not await watch.until(
            lambda: any(m.status in beyond for m in watch.messages.values()),
            self.options.timeout,
        ):
            raise Missed(
                f"no delivery status beyond 'sent' within {self.options.timeout:g} s: does the "
                "stand-in post status webhooks to this API? (make dev sets its "
                "--whatsapp-webhook-url)"
            )
        self.view.note("delivery statuses: sent → delivered → read seen")

    async def _handoff(self, watch: Watch) -> None:
        task = next(
            t for t in watch.tasks.values() if t.get("priority") == "high" and t.get("assigned_to")
        )
        assignee = str(task["assigned_to"])
        who = await self._member(assignee)
        self.view.note(f"task: {task['title']} (priority {task['priority']}, {task['status']})")
        self.view.note(f"assigned to {who}; the bot is off for this conversation")

    async def _member(self, user_id: str) -> str:
        """The member's name and email (Auth's admin API, as the service role); the id when they
        cannot be read."""
        try:
            found = await self.supabase.auth.admin.get_user_by_id(user_id)
        except (AuthError, httpx.HTTPError):
            return user_id
        email = found.user.email or user_id
        name = (found.user.user_metadata or {}).get("full_name")
        return f"{name or email} <{email}>"


class StepCheck:
    """One step: the customer writes, then each expectation must be observed before the step's
    deadline."""

    def __init__(
        self, number: int, step: script.Step, watch: Watch, view: View, timeout: float
    ) -> None:
        self.number = number
        self.step = step
        self.watch = watch
        self.view = view
        self.timeout = timeout
        self.deadline = 0.0
        self.started = 0.0
        self.wamids: list[str] = []
        self.joined_late = False  # the typing channel was joined after this step's message

    async def play(self, phone: Phone, private: bool) -> None:
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        self.deadline = self.started + self.timeout
        try:
            # A burst arrives as the customer types it, one webhook per message (as Meta mostly
            # delivers them); the workspace's reply window (the demo seed's 1.5 s) lets the
            # worker answer them as one turn.
            for number, text in enumerate(self.step.texts):
                if number:
                    await asyncio.sleep(TYPING_GAP)
                self.view.customer(text)
                self.wamids += await phone.write(text)
        except WebhookRefused as exc:
            raise self._missed(str(exc)) from None
        except httpx.HTTPError as exc:
            raise self._missed(f"the webhook API did not answer ({type(exc).__name__})") from None
        if self.watch.conversation_id is None:
            conversation_id = await self.watch.conversation_of(self.wamids[0])
            if conversation_id is None:
                raise self._missed(
                    "the webhook answered 200 but its message is not in Supabase: are the API "
                    "and this command on the same SUPABASE_URL?"
                )
            await self.watch.follow(conversation_id, private=private)
            self.joined_late = True
            self.view.note(f"conversation {conversation_id}")
        await self._expect(
            "the messages to be stored",
            "the messages were not stored",
            self._stored,
            "are the API and this command on the same SUPABASE_URL?",
        )
        await self._expect(
            "the worker to take the turn",
            "no reply",
            self._taken,
            f"the message is stored, no turn took it; {WORKER_HINT}",
        )
        turns = {self._inbound(w).agent_turn_id for w in self.wamids}
        if len(turns) > 1:
            raise self._missed(
                f"the burst was answered in {len(turns)} turns, not one: the worker answered "
                "before all of it arrived (is the workspace's reply_window_ms longer than "
                f"{TYPING_GAP:g} s?)"
            )
        await self._expect(
            "the handoff message" if self.step.handoff else "a reply",
            "no reply sent",
            self._replied,
            f"{WORKER_HINT} Does WHATSAPP_API_BASE_URL point at the stand-in?",
        )
        await self._expect(
            "typing to stop",
            f"no typing on, then off, on conversation:{self.watch.conversation_id}",
            self._typed,
            "does the worker's SUPABASE_URL point at this Supabase?",
        )
        if not any(typing and t >= self.started for t, typing in self.watch.typing):
            self.view.note("typing began before the demo joined the channel; its stop was seen")
        await self._expect(
            "every reply to go out", "replies still unsent", self._settled, WORKER_HINT
        )
        if failed := [m for m in self._outbound() if m.status not in DELIVERED]:
            raise self._missed(f"a reply was not sent ({failed[0].status}): {failed[0].text!r}")
        if self.step.handoff:
            await self._expect(
                "the handoff task",
                "no high-priority handoff task with an assignee",
                self._task,
                "is a team member online (team_members.is_online)?",
            )
            await self._expect(
                "the bot to be switched off",
                "the bot was not switched off for the conversation",
                lambda: self.watch.conversation.get("agent_conversational") is False,
                "did the handoff commit? (the worker's log says)",
            )

    async def _expect(
        self, waiting: str, missed: str, check: Callable[[], bool], hint: str
    ) -> None:
        self.view.waiting(waiting)
        left = self.deadline - asyncio.get_running_loop().time()
        if not await self.watch.until(check, max(left, 0.0)):
            error = self.watch.poll_error
            extra = f" (reading Supabase failed: {error})" if error else ""
            raise self._missed(f"{missed} within {self.timeout:g} s{extra}: {hint}")
        self.view.waiting("")

    def _missed(self, text: str) -> Missed:
        return Missed(f"step {self.number} ({self.step.title}) not observed: {text}")

    def _inbound(self, wamid: str) -> Message:
        return next(m for m in self.watch.messages.values() if m.wamid == wamid)

    def _stored(self) -> bool:
        stored = {m.wamid for m in self.watch.messages.values() if m.direction == "inbound"}
        return all(w in stored for w in self.wamids)

    def _taken(self) -> bool:
        return all(self._inbound(w).agent_turn_id for w in self.wamids)

    def _outbound(self) -> list[Message]:
        return [
            m
            for m in self.watch.messages.values()
            if m.direction == "outbound" and m.seen_at >= self.started
        ]

    def _replied(self) -> bool:
        turn = self._inbound(self.wamids[0]).agent_turn_id
        return any(
            m.status in DELIVERED
            and (m.outbox_kind == "handoff" if self.step.handoff else m.agent_turn_id == turn)
            for m in self._outbound()
        )

    def _typed(self) -> bool:
        seen = [(t, typing) for t, typing in self.watch.typing if t >= self.started]
        starts = [t for t, typing in seen if typing]
        if starts:
            return any(not typing and t >= starts[0] for t, typing in seen)
        # A conversation's channel can be joined only once its first message is stored, and
        # the turn may start typing before the join completes: its stop is what is left to see.
        return self.joined_late and any(not typing for _, typing in seen)

    def _settled(self) -> bool:
        return all(m.status in SETTLED for m in self._outbound())

    def _task(self) -> bool:
        return any(
            t.get("priority") == "high" and t.get("assigned_to") for t in self.watch.tasks.values()
        )
