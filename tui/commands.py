"""The command palette (ctrl+p): every operator action that applies where it was opened."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.markup import escape
from textual.screen import Screen

from tui.keys import ACTIONS, display_keys, effective_keys


class OperatorCommands(Provider):
    def _commands(self) -> Iterator[tuple[str, str, Callable[[], Any]]]:
        screen = self.screen
        scope = getattr(screen, "SCOPE", None)
        keymap = getattr(self.app, "user_keymap", {})
        target: App | Screen
        for action in ACTIONS:
            if action.scope == "app":
                target = self.app
            elif action.scope == scope:
                target = screen
            else:
                continue
            keys = display_keys(effective_keys(action, keymap))
            yield action.title, escape(f"{action.help} · key {keys}"), partial(target.run_action, action.action)

    async def discover(self) -> Hits:
        for title, help_text, command in self._commands():
            yield DiscoveryHit(title, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, command in self._commands():
            score = matcher.match(f"{title} {help_text}")
            if score > 0:
                yield Hit(score, matcher.highlight(title), command, help=help_text)
