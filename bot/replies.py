"""Every user-facing string, rendered from a message key (pure: no I/O, no Telegram).

Keys are the future gettext msgids: adding Russian or Kazakh means shipping catalogues
and passing their ``gettext`` to :class:`Replies`; handlers already ask
:func:`for_language` with the user's language code and never hold text of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bot.screening import Assessed, Outcome, Rejected, RejectReason, Unassessable
from inference.types import QualityIssue, Risk

Translate = Callable[[str], str]

_ENGLISH: Mapping[str, str] = {
    "start": (
        "Hello! I help you decide whether a skin spot or mole should be checked by a doctor.\n"
        "\n"
        "Send me a photo of one spot and I will tell you:\n"
        "• how much attention it needs (low, medium or high risk),\n"
        "• what kind of spot it looks most like,\n"
        "• which parts of the photo mattered most,\n"
        "• whether and how soon to see a doctor.\n"
        "\n"
        "What I do not do: I am a screening aid, not a diagnosis. I can be wrong, I only see "
        "the photo you send, and I do not replace a doctor. If a spot worries you, see a "
        "doctor whatever I say.\n"
        "\n"
        "{photo_tips}\n"
        "\n"
        "I do not keep your photos. I keep only the result, under an anonymous code rather "
        "than your name or account."
    ),
    "help": (
        "Send one photo of one skin spot; I will reply with a risk level and advice.\n"
        "\n"
        "{photo_tips}\n"
        "\n"
        "Commands:\n"
        "/start – what I do and do not do\n"
        "/help – these tips\n"
        "\n"
        "I am a screening aid, not a diagnosis."
    ),
    "photo_tips": (
        "How to take a good photo:\n"
        "1. Get close: the spot should fill about a third of the picture.\n"
        "2. Keep it in focus: tap the spot on the screen, hold the phone steady.\n"
        "3. Use daylight, for example near a window.\n"
        "4. No flash: its glare hides detail.\n"
        "5. Put the whole spot in the middle of the picture.\n"
        "\n"
        "For the best quality, send the photo as a file: tap 📎, choose File, then pick the "
        "photo. Telegram shrinks ordinary photos."
    ),
    "command.start": "What this bot does and does not do",
    "command.help": "How to take and send a good photo",
    "pointer": (
        "Please send me a photo of the skin spot (as a photo or as a file). "
        "Type /help for tips on taking a good one."
    ),
    "error": "Sorry, something went wrong on my side. Please try again in a minute.",
    "disclaimer": (
        "This is a screening aid, not a diagnosis: it can be wrong. "
        "If a spot worries you, see a doctor whatever the result."
    ),
    "heatmap_caption": (
        "Where the model looked: warmer colours mark the parts of the photo that influenced "
        "the result most. This is not a map of disease."
    ),
    "result.lesion_type": "It looks most like: {name}.",
    "risk.high": "Result: HIGH risk.",
    "risk.medium": "Result: MEDIUM risk.",
    "risk.low": "Result: LOW risk.",
    "advice.high": (
        "Please see a doctor soon, within 2 weeks (a GP or a dermatologist), "
        "and show them this spot."
    ),
    "advice.medium": "Please have this spot checked by a doctor in the coming weeks.",
    "advice.low": (
        "No urgent need to see a doctor. Watch the spot for changes, about once a month, "
        "using ABCDE: Asymmetry, an irregular Border, several Colours, a Diameter over 6 mm, "
        "Evolving (changing). See a doctor if it changes, bleeds, itches or does not heal."
    ),
    "unassessable": "I can't assess this photo, so I can't give a risk level for it.",
    "unassessable.retake": "Please take a new photo and send it again.",
    "unassessable.doctor": (
        "I am only a screening aid, not a diagnosis: if the spot worries you, see a doctor."
    ),
    "issue.generic": (
        "Take a close, sharp photo in daylight, without flash, with the spot in the middle."
    ),
    "issue.not_a_lesion": (
        "I could not find a skin spot in this photo. Photograph one spot on the skin, close "
        "up, with the spot in the middle."
    ),
    "issue.low_resolution": (
        "The photo has too little detail. Move closer (while keeping it sharp), or send the "
        "photo as a file so that Telegram does not shrink it."
    ),
    "issue.too_dark": "The photo is too dark. Take it in daylight, for example near a window.",
    "issue.overexposed": (
        "The photo is too bright and washed out. Avoid direct sunlight and the flash; "
        "soft daylight works best."
    ),
    "issue.blurry": (
        "The photo is blurry. Hold the phone steady, tap the spot on the screen to focus, "
        "and do not go closer than your camera can focus."
    ),
    "issue.glare": (
        "There are shiny reflections (glare) on the spot. Turn off the flash and tilt the "
        "phone a little so the light does not reflect into the camera."
    ),
    "issue.lesion_too_small": (
        "The spot is too small in the photo. Move closer so that it fills about a third of "
        "the picture."
    ),
    "issue.lesion_cut_off": (
        "The spot is cut off or not in the middle. Put the whole spot in the middle of the "
        "picture, with some skin around it."
    ),
    "rejected.empty": "That file is empty. Please send a photo of the skin spot.",
    "rejected.too_many_bytes": (
        "That file is too large for me. Please send it as an ordinary photo instead of a "
        "file, or send a smaller picture."
    ),
    "rejected.not_an_image": (
        "That file is not a picture I can read. Please send a photo (JPEG or PNG) of the skin spot."
    ),
    "rejected.corrupt": (
        "I could not open that picture: it seems damaged or incomplete. Please send it again."
    ),
    "rejected.too_many_pixels": (
        "That picture is too large (too many pixels) for me. Please send it as an ordinary "
        "photo instead of a file, or send a smaller picture."
    ),
    "rejected.too_small": (
        "That picture is too small to assess. Please send a close, sharp photo, ideally as a file."
    ),
    "rejected.animated": (
        "That is an animation. I can only assess a still photo of the spot; please send one."
    ),
    "rejected.video": "I can't assess videos. Please send a still photo of the spot.",
    "rejected.sticker": "That's a sticker 🙂 Please send a photo of the skin spot.",
    "rejected.voice": (
        "I can't listen to voice or audio messages. Please send a photo of the skin spot."
    ),
    "stats.title": "Consultations so far:",
    "stats.line": "{status} / {detail}: {count}",
    "stats.empty": "No consultations yet.",
}


def english(key: str) -> str:
    """Look up the English text for a message key."""
    return _ENGLISH[key]


class Replies:
    """Render replies in one language."""

    def __init__(self, translate: Translate = english) -> None:
        self._t = translate

    def start(self) -> str:
        return self._t("start").format(photo_tips=self._t("photo_tips"))

    def help(self) -> str:
        return self._t("help").format(photo_tips=self._t("photo_tips"))

    def commands(self) -> list[tuple[str, str]]:
        """Return the (command, description) pairs for Telegram's command menu."""
        return [(name, self._t(f"command.{name}")) for name in ("start", "help")]

    def pointer(self) -> str:
        return self._t("pointer")

    def error(self) -> str:
        return self._t("error")

    def heatmap_caption(self) -> str:
        return self._t("heatmap_caption")

    def outcome(self, outcome: Outcome) -> str:
        """Render the text reply for any screening outcome."""
        match outcome:
            case Assessed():
                return self.assessed(outcome.risk, outcome.lesion_name)
            case Unassessable():
                return self.unassessable(outcome.issues)
            case Rejected():
                return self.rejected(outcome.reason)

    def assessed(self, risk: Risk, lesion_name: str) -> str:
        if risk is Risk.UNASSESSABLE:
            raise ValueError("an unassessable photo has no risk level to render")
        return "\n\n".join(
            [
                self._t(f"risk.{risk.value}"),
                self._t("result.lesion_type").format(name=lesion_name),
                self._t(f"advice.{risk.value}"),
                self._t("disclaimer"),
            ]
        )

    def unassessable(self, issues: tuple[QualityIssue, ...]) -> str:
        advice = [f"• {self._t(f'issue.{issue.value}')}" for issue in issues]
        return "\n\n".join(
            [
                self._t("unassessable"),
                "\n".join(advice or [self._t("issue.generic")]),
                self._t("unassessable.retake"),
                self._t("unassessable.doctor"),
            ]
        )

    def rejected(self, reason: RejectReason) -> str:
        return self._t(f"rejected.{reason.value}")

    def stats(self, counts: Mapping[tuple[str, str | None], int]) -> str:
        if not counts:
            return self._t("stats.empty")
        lines = [
            self._t("stats.line").format(status=status, detail=detail or "-", count=count)
            for (status, detail), count in sorted(counts.items(), key=lambda kv: -kv[1])
        ]
        return "\n".join([self._t("stats.title"), *lines])


def for_language(language_code: str | None) -> Replies:
    """Return the replies for a Telegram user's language (English is the only one so far)."""
    del language_code  # en/ru/kk catalogues plug in here
    return Replies()
