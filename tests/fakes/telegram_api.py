"""A small fake Telegram Bot API server (aiohttp, 127.0.0.1, a free port).

It speaks just enough of the Bot API for the bot: getMe, getUpdates (long polling),
sendMessage, sendPhoto and sendDocument (multipart; the bytes are kept), editMessageText,
editMessageReplyMarkup, answerCallbackQuery, sendChatAction, getFile and the file download
route, setWebhook and deleteWebhook, setMyCommands and deleteMyCommands (per scope and
language), setMyDescription and setMyShortDescription (per language), leaveChat, and "ok" for
other harmless calls. Faults (an error status, 429 with retry_after, a slow answer, a dropped
connection) are queued per method with ``inject`` and used by that method's next calls, in
order. While a webhook is set, updates are POSTed to it with its secret token, as
Telegram does, and getUpdates is refused.
Inline keyboards the bot sends are kept, and tests press their buttons with
``push_callback``.

Tests register files, push messages as a user would send them, then wait for the bot's
replies in that chat::

    photo = api.add_file(jpeg_bytes)
    api.push_message(user_id=42, photo=[api.photo_size(photo, 1280, 960)])
    replies = await api.wait_for_text(chat_id=42)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, ClientError, ClientSession, web

TOKEN = "123456789:TEST-fake-token-abcdefghijklmnopqrstu"
BOT_USER = {
    "id": 7_000_000_001,
    "is_bot": True,
    "first_name": "Skin Check",
    "username": "skin_check_test_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
# Long polls are cut short so a stopping bot is never kept waiting long.
MAX_POLL_S = 2.0
# Telegram's limits, in UTF-16 code units: longer texts and captions are refused.
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_DESCRIPTION = 512
MAX_SHORT_DESCRIPTION = 120

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class RegisteredFile:
    file_id: str
    file_unique_id: str
    file_size: int | None  # as announced in updates; may differ from the real length
    data: bytes

    def as_dict(self) -> JsonDict:
        out: JsonDict = {"file_id": self.file_id, "file_unique_id": self.file_unique_id}
        if self.file_size is not None:
            out["file_size"] = self.file_size
        return out


@dataclass(frozen=True)
class SentMessage:
    """What the bot sent or edited: text (or caption), any photo or document, any buttons."""

    method: str
    chat_id: int
    text: str | None
    photo: bytes | None = None
    message_id: int = 0
    reply_markup: JsonDict | None = None
    document: bytes | None = None
    filename: str | None = None
    at: float = field(default_factory=time.monotonic)  # when the fake accepted it

    @property
    def buttons(self) -> list[tuple[str, str]]:
        """The inline keyboard as (label, callback data) pairs, row after row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [(button["text"], button["callback_data"]) for row in rows for button in row]


@dataclass(frozen=True)
class Fault:
    """How one call goes wrong: an error answer, a late answer, or no answer at all."""

    status: int = 500
    description: str = "Internal Server Error"
    retry_after: int | None = None  # with status 429, as Telegram's flood control sends
    delay_s: float = 0.0  # wait this long first (longer than the bot's timeout: a timeout)
    drop: bool = False  # close the connection without an answer

    @classmethod
    def bad_request(cls, description: str = "Bad Request: chat not found") -> Fault:
        return cls(400, description)

    @classmethod
    def flood(cls, retry_after: int = 1) -> Fault:
        return cls(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        """Answer normally, but only after ``delay_s`` (a client timeout if it is shorter)."""
        return cls(200, "", delay_s=delay_s)

    @classmethod
    def timeout(cls, delay_s: float) -> Fault:
        """Say nothing for ``delay_s``, then drop the connection: nothing is delivered."""
        return cls(0, "", delay_s=delay_s, drop=True)

    @classmethod
    def dropped(cls) -> Fault:
        return cls(0, "", drop=True)


# A queued entry of None lets that call through untouched.
FaultPlan = Fault | None


@dataclass
class FakeTelegramApi:
    token: str = TOKEN
    sent: list[SentMessage] = field(default_factory=list)
    chat_actions: list[tuple[int, str]] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)  # file ids, in download order
    commands: list[JsonDict] = field(default_factory=list)  # the default (English) menu
    commands_by_language: dict[str, list[JsonDict]] = field(default_factory=dict)
    # Every menu by (scope, language code or ""): scope "default", or "chat:<id>".
    commands_by_scope: dict[tuple[str, str], list[JsonDict]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)  # by language code or ""
    # Private chats that exist: users who have written to the bot. Telegram refuses a
    # chat's own menu for any other ("chat not found").
    known_chats: set[int] = field(default_factory=set)
    short_descriptions: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)  # Bot API method names, in call order
    answered_callbacks: list[str] = field(default_factory=list)
    left_chats: list[int] = field(default_factory=list)  # leaveChat, in call order

    def __post_init__(self) -> None:
        self._updates: list[JsonDict] = []
        self._files: dict[str, RegisteredFile] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.webhook: tuple[str, str | None] | None = None  # (url, secret token) while set
        self._delivery: asyncio.Task[None] | None = None
        self._held: dict[str, asyncio.Event] = {}
        # Per Bot API method (lower case), or "download" for the file route.
        self._faults: dict[str, list[FaultPlan]] = {}
        self.faults_used: list[tuple[str, Fault]] = []  # (method, fault), in the order used
        self.download_requests: list[str] = []  # file ids asked for, served or not yet

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        await self._stop_delivery()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """The value for TELEGRAM_API_URL."""
        return f"http://127.0.0.1:{self.port}"

    # -- what a test does --------------------------------------------------------------

    def add_file(self, data: bytes, *, file_size: int | None = -1) -> RegisteredFile:
        """Make ``data`` downloadable; ``file_size`` is what updates announce (-1: its length)."""
        n = next(self._ids)
        registered = RegisteredFile(
            file_id=f"file-{n}",
            file_unique_id=f"unique-{n}",
            file_size=len(data) if file_size == -1 else file_size,
            data=data,
        )
        self._files[registered.file_id] = registered
        return registered

    @staticmethod
    def photo_size(file: RegisteredFile, width: int, height: int) -> JsonDict:
        """Describe one PhotoSize of a photo message."""
        return {**file.as_dict(), "width": width, "height": height}

    @staticmethod
    def _user(user_id: int, language_code: str) -> JsonDict:
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": "Test",
            "language_code": language_code,
        }

    def push_message(
        self,
        user_id: int,
        language_code: str = "en",
        *,
        group_id: int | None = None,
        **content: Any,
    ) -> int:
        """Queue a message from ``user_id``; return its id.

        In their private chat (whose id is the user's), or in the supergroup ``group_id``.
        """
        update = self.message_update(user_id, language_code, group_id=group_id, **content)
        self._updates.append(update)
        self._notify()
        return int(update["message"]["message_id"])

    def push_update(self, update: JsonDict) -> None:
        """Queue ``update`` exactly as given (say, one the bot's library cannot parse)."""
        self._updates.append(update)
        self._notify()

    def next_id(self) -> int:
        """A fresh number for an update or message id."""
        return next(self._ids)

    def message_update(
        self,
        user_id: int,
        language_code: str = "en",
        *,
        group_id: int | None = None,
        **content: Any,
    ) -> JsonDict:
        """An update with a message from ``user_id``, as Telegram would send it, not queued."""
        self.known_chats.add(user_id)  # their private chat with the bot exists from now on
        message = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": _chat(user_id if group_id is None else group_id),
            "from": self._user(user_id, language_code),
            **content,
        }
        return {"update_id": next(self._ids), "message": message}

    def push_text(
        self,
        user_id: int,
        text: str,
        language_code: str = "en",
        reply_to: SentMessage | None = None,
        group_id: int | None = None,
    ) -> int:
        """Queue a text message; a leading /command is marked as one, as Telegram does."""
        content: JsonDict = {"text": text}
        if text.startswith("/"):
            command = text.split()[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if reply_to is not None:
            content["reply_to_message"] = self._message(
                reply_to.chat_id, reply_to.message_id, text=reply_to.text
            )
        return self.push_message(user_id, language_code, group_id=group_id, **content)

    def push_callback(
        self, user_id: int, pressed: SentMessage, data: str, language_code: str = "en"
    ) -> None:
        """Queue a press of the inline button carrying ``data`` under the message ``pressed``."""
        if data not in [button_data for _, button_data in pressed.buttons]:
            raise AssertionError(f"no button {data!r} under that message: {pressed.buttons}")
        query = {
            "id": str(next(self._ids)),
            "from": self._user(user_id, language_code),
            "chat_instance": f"chat-{user_id}",
            "data": data,
            "message": self._message(pressed.chat_id, pressed.message_id, text=pressed.text),
        }
        self._updates.append({"update_id": next(self._ids), "callback_query": query})
        self._notify()

    def inject(self, method: str, *faults: FaultPlan) -> None:
        """Make the next calls of ``method`` fail as ``faults`` say, one each, in order.

        ``method`` is a Bot API method name, or "download" for the file download route.
        """
        self._faults.setdefault(method.lower(), []).extend(faults)

    def pending_faults(self, method: str) -> int:
        return len(self._faults.get(method.lower(), []))

    def hold_download(self, file_id: str) -> asyncio.Event:
        """Keep the download of ``file_id`` open until the returned event is set."""
        self._held[file_id] = asyncio.Event()
        return self._held[file_id]

    async def move_webhook(self, url: str) -> None:
        """Post updates to ``url`` from now on, with the same secret: what a load balancer
        does when the replica behind the registered URL dies."""
        assert self.webhook is not None, "no webhook is set"
        await self._stop_delivery()
        self.webhook = (url, self.webhook[1])
        self._delivery = asyncio.create_task(self._deliver(*self.webhook))

    @property
    def unconfirmed(self) -> int:
        """Updates queued here that the bot has not confirmed yet (getUpdates offset)."""
        return len(self._updates)

    def replies_to(self, chat_id: int) -> list[SentMessage]:
        return [m for m in self.sent if m.chat_id == chat_id]

    async def wait_for(self, predicate: Callable[[], bool], within_s: float = 120.0) -> None:
        """Wait until ``predicate`` holds (checked whenever the fake's state changes)."""
        async with asyncio.timeout(within_s):
            while not predicate():
                await self._changed.wait()

    async def wait_for_text(
        self, chat_id: int, count: int = 1, within_s: float = 120.0
    ) -> list[SentMessage]:
        """Wait for ``count`` text messages to ``chat_id``; return everything sent there."""

        def enough() -> bool:
            texts = [m for m in self.replies_to(chat_id) if m.method == "sendMessage"]
            return len(texts) >= count

        await self.wait_for(enough, within_s)
        return self.replies_to(chat_id)

    async def wait_for_sent(
        self, chat_id: int, method: str, count: int = 1, within_s: float = 120.0
    ) -> list[SentMessage]:
        """Wait for ``count`` calls of ``method`` (say editMessageText) for ``chat_id``."""

        def sent() -> list[SentMessage]:
            return [m for m in self.replies_to(chat_id) if m.method == method]

        await self.wait_for(lambda: len(sent()) >= count, within_s)
        return sent()

    def last_with_buttons(self, chat_id: int) -> SentMessage:
        """Return the latest message to ``chat_id`` that has inline buttons."""
        return [m for m in self.replies_to(chat_id) if m.buttons][-1]

    # -- the server side -----------------------------------------------------------------

    def _notify(self) -> None:
        # Wake every waiter; each re-checks its predicate and waits on the fresh event.
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        self.calls.append(method)
        params = await _form(request)
        params.update(request.query)
        if (failed := await self._fault(method, request)) is not None:
            return failed
        handler = self._methods().get(method.lower())
        if handler is None:
            return _ok(True)  # setMyDescription, close, ...: harmless, nothing to record
        return await handler(params)

    async def _fault(self, method: str, request: web.Request) -> web.Response | None:
        """Apply the next queued fault of ``method``: the answer to send instead of the real
        one, or None to go on (nothing queued, a None entry, or a slow but normal answer)."""
        queued = self._faults.get(method.lower())
        fault = queued.pop(0) if queued else None
        if fault is None:
            return None
        self.faults_used.append((method, fault))
        self._notify()
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.drop:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never reaches the bot: it is cut off
        if fault.status != 200:
            return _error(fault.status, fault.description, fault.retry_after)
        return None

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "senddocument": self._send_document,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_reply_markup,
            "answercallbackquery": self._answer_callback_query,
            "sendchataction": self._send_chat_action,
            "getfile": self._get_file,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "setmycommands": self._set_my_commands,
            "deletemycommands": self._delete_my_commands,
            "setmydescription": self._set_my_description,
            "setmyshortdescription": self._set_my_short_description,
            "leavechat": self._leave_chat,
        }

    async def _true(self, params: dict[str, Any]) -> web.Response:
        return _ok(True)

    async def _get_me(self, params: dict[str, Any]) -> web.Response:
        return _ok(BOT_USER)

    async def _set_webhook(self, params: dict[str, Any]) -> web.Response:
        await self._stop_delivery()
        self.webhook = (str(params["url"]), params.get("secret_token"))
        self._delivery = asyncio.create_task(self._deliver(*self.webhook))
        self._notify()
        return _ok(True)

    async def _delete_webhook(self, params: dict[str, Any]) -> web.Response:
        await self._stop_delivery()
        self.webhook = None
        self._notify()
        return _ok(True)

    async def _stop_delivery(self) -> None:
        if self._delivery is not None:
            self._delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._delivery
            self._delivery = None

    async def _deliver(self, url: str, secret: str | None) -> None:
        """POST each update in order until the webhook answers 200, as Telegram does."""
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        async with ClientSession() as session:
            while True:
                if not self._updates:
                    with contextlib.suppress(TimeoutError):
                        await self.wait_for(lambda: bool(self._updates), MAX_POLL_S)
                    continue
                try:
                    async with session.post(url, json=self._updates[0], headers=headers) as r:
                        delivered = r.status == 200
                except (OSError, ClientError):
                    delivered = False  # the bot's server is not up yet, or went away
                if delivered:
                    self._updates.pop(0)
                else:
                    await asyncio.sleep(0.2)

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        if self.webhook is not None:
            return _error(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = int(params.get("offset", 0))
        limit = int(params.get("limit", 100))
        timeout = min(float(params.get("timeout", 0)), MAX_POLL_S)
        # As Telegram does: asking from an offset confirms every earlier update.
        allowed = params.get("allowed_updates")
        if allowed:
            # As Telegram does: kinds the bot did not ask for are never sent (dropped).
            kinds = set(json.loads(allowed)) | {"update_id"}
            self._updates = [u for u in self._updates if set(u) <= kinds or len(u) == 1]
        unconfirmed = [u for u in self._updates if u["update_id"] >= offset]
        if len(unconfirmed) != len(self._updates):
            self._updates = unconfirmed
            self._notify()  # someone may wait for the bot to have taken them (unconfirmed)
        if not self._updates and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await self.wait_for(lambda: bool(self._updates), timeout)
        return _ok(self._updates[:limit])

    async def _send_message(self, params: dict[str, Any]) -> web.Response:
        if refused := _refuse_text(str(params.get("text", "")), MAX_TEXT, "message"):
            return refused
        chat_id, message_id = int(params["chat_id"]), next(self._ids)
        markup = _markup(params)
        self.sent.append(
            SentMessage("sendMessage", chat_id, str(params["text"]), None, message_id, markup)
        )
        self._notify()
        return _ok(self._message(chat_id, message_id, text=params["text"], reply_markup=markup))

    async def _send_photo(self, params: dict[str, Any]) -> web.Response:
        caption_text = str(params.get("caption") or "")
        if caption_text and (refused := _refuse_text(caption_text, MAX_CAPTION, "message caption")):
            return refused
        chat_id, message_id = int(params["chat_id"]), next(self._ids)
        upload = params["photo"]
        photo = upload.data if isinstance(upload, Upload) else None
        caption = params.get("caption")
        self.sent.append(SentMessage("sendPhoto", chat_id, caption, photo, message_id))
        self._notify()
        stored = self.add_file(photo or b"")
        sizes = [self.photo_size(stored, 1, 1)]
        return _ok(self._message(chat_id, message_id, photo=sizes, caption=caption))

    async def _send_document(self, params: dict[str, Any]) -> web.Response:
        chat_id, message_id = int(params["chat_id"]), next(self._ids)
        upload = params["document"]
        if not isinstance(upload, Upload):
            return _error(400, "Bad Request: expected an uploaded document")
        data, filename = upload.data, upload.filename
        caption = params.get("caption")
        self.sent.append(
            SentMessage(
                "sendDocument",
                chat_id,
                caption,
                message_id=message_id,
                document=data,
                filename=filename,
            )
        )
        self._notify()
        stored = self.add_file(data)
        document = {**stored.as_dict(), "file_name": filename}
        return _ok(self._message(chat_id, message_id, document=document, caption=caption))

    async def _edit_message_text(self, params: dict[str, Any]) -> web.Response:
        if refused := _refuse_text(str(params.get("text", "")), MAX_TEXT, "message"):
            return refused
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        markup = _markup(params)
        text = str(params["text"])
        self.sent.append(SentMessage("editMessageText", chat_id, text, None, message_id, markup))
        self._notify()
        return _ok(self._message(chat_id, message_id, text=text, reply_markup=markup))

    async def _edit_reply_markup(self, params: dict[str, Any]) -> web.Response:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        markup = _markup(params)
        self.sent.append(
            SentMessage("editMessageReplyMarkup", chat_id, None, None, message_id, markup)
        )
        self._notify()
        return _ok(self._message(chat_id, message_id, text="", reply_markup=markup))

    async def _answer_callback_query(self, params: dict[str, Any]) -> web.Response:
        self.answered_callbacks.append(str(params["callback_query_id"]))
        self._notify()
        return _ok(True)

    async def _send_chat_action(self, params: dict[str, Any]) -> web.Response:
        self.chat_actions.append((int(params["chat_id"]), str(params["action"])))
        return _ok(True)

    async def _leave_chat(self, params: dict[str, Any]) -> web.Response:
        self.left_chats.append(int(params["chat_id"]))
        self._notify()
        return _ok(True)

    async def _set_my_commands(self, params: dict[str, Any]) -> web.Response:
        commands = json.loads(params["commands"])
        language = str(params.get("language_code") or "")
        scope = _scope(params)
        if not self._chat_exists(scope):
            return _error(400, "Bad Request: chat not found")
        self.commands_by_scope[(scope, language)] = commands
        if scope == "default":
            self.commands_by_language[language] = commands
            if not language:
                self.commands = commands
        return _ok(True)

    async def _delete_my_commands(self, params: dict[str, Any]) -> web.Response:
        language, scope = str(params.get("language_code") or ""), _scope(params)
        if not self._chat_exists(scope):
            return _error(400, "Bad Request: chat not found")
        self.commands_by_scope.pop((scope, language), None)
        return _ok(True)

    def _chat_exists(self, scope: str) -> bool:
        return not scope.startswith("chat:") or int(scope.split(":")[1]) in self.known_chats

    async def _set_my_description(self, params: dict[str, Any]) -> web.Response:
        text = str(params.get("description") or "")
        if utf16_length(text) > MAX_DESCRIPTION:
            return _error(400, "Bad Request: description is too long")
        self.descriptions[str(params.get("language_code") or "")] = text
        return _ok(True)

    async def _set_my_short_description(self, params: dict[str, Any]) -> web.Response:
        text = str(params.get("short_description") or "")
        if utf16_length(text) > MAX_SHORT_DESCRIPTION:
            return _error(400, "Bad Request: short description is too long")
        self.short_descriptions[str(params.get("language_code") or "")] = text
        return _ok(True)

    async def _get_file(self, params: dict[str, Any]) -> web.Response:
        registered = self._files.get(str(params.get("file_id")))
        if registered is None:
            return _error(400, "Bad Request: invalid file_id")
        return _ok({**registered.as_dict(), "file_path": f"documents/{registered.file_id}"})

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        file_id = request.match_info["path"].rsplit("/", 1)[-1]
        registered = self._files.get(file_id)
        if registered is None:
            return _error(404, "Not Found")
        self.download_requests.append(file_id)
        self._notify()
        if (failed := await self._fault("download", request)) is not None:
            return failed
        if file_id in self._held:
            await self._held[file_id].wait()
        self.downloads.append(file_id)
        return web.Response(body=registered.data, content_type="application/octet-stream")

    def _message(self, chat_id: int, message_id: int, **content: Any) -> JsonDict:
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": _chat(chat_id),
            "from": BOT_USER,
            **{key: value for key, value in content.items() if value is not None},
        }


@dataclass(frozen=True)
class Upload:
    """A file the bot uploaded (a heatmap, a report)."""

    data: bytes
    filename: str | None


async def _form(request: web.Request) -> dict[str, Any]:
    """The request's form fields, uploads as :class:`Upload`, read into memory.

    Not ``request.post()``: it spools uploads to temporary files, which a client that dies
    mid-upload (a bot killed with -9 in a test) leaves unclosed, a ResourceWarning at
    garbage collection that fails the whole test session.
    """
    if not request.can_read_body:
        return {}
    if not request.content_type.startswith("multipart/"):
        return dict(await request.post())  # URL-encoded: no files, nothing spooled
    fields: dict[str, Any] = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        data = bytes(await part.read())
        fields[part.name] = Upload(data, part.filename) if part.filename else data.decode()
    return fields


def utf16_length(text: str) -> int:
    """The length Telegram counts."""
    return len(text.encode("utf-16-le")) // 2


def _refuse_text(text: str, limit: int, what: str) -> web.Response | None:
    """Telegram's answer to an empty or over-long text or caption; None if it is fine."""
    if not text.strip():
        return _error(400, "Bad Request: message text is empty")
    if utf16_length(text) > limit:
        return _error(400, f"Bad Request: {what} is too long")
    return None


def _scope(params: dict[str, Any]) -> str:
    """A command scope as a short key: its type, and the chat for a chat's own scope."""
    raw = params.get("scope") or {"type": "default"}
    scope = json.loads(raw) if isinstance(raw, str) else raw
    return f"chat:{scope['chat_id']}" if scope["type"] == "chat" else str(scope["type"])


def _chat(chat_id: int) -> JsonDict:
    # As in Telegram: private chats have the user's (positive) id, groups negative ids.
    if chat_id < 0:
        return {"id": chat_id, "type": "supergroup", "title": "Test group"}
    return {"id": chat_id, "type": "private", "first_name": "Test"}


def _markup(params: dict[str, Any]) -> JsonDict | None:
    raw = params.get("reply_markup")
    return json.loads(raw) if isinstance(raw, str) and raw else None


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: JsonDict = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)
