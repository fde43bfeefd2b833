"""The prompt table: one prompt per intent type, filled from the intent, user data bounded and inert."""

from __future__ import annotations

import pytest

from contracts.enums import IntentType
from contracts.messages import Intent
from libs.llm import PROMPTS, Prompt, build_prompt
from libs.llm.constants import MAX_DETAIL_VALUE_CHARS, MAX_DETAILS_CHARS
from libs.llm.prompts import PROMPT_VARIANTS, render_details, validate_table


class TestTable:
    def test_every_intent_type_has_a_prompt_with_limits(self) -> None:
        """Each intent type has a system prompt, a user template and positive completion limits."""
        assert set(PROMPTS) == set(IntentType)
        for prompt in PROMPTS.values():
            assert prompt.system and prompt.user
            assert prompt.max_tokens > 0
            assert 0 <= prompt.temperature <= 2

    def test_validation_rejects_unknown_template_fields_and_missing_intents(self) -> None:
        """A template naming a field the renderer does not fill, or a table missing an intent type, is refused."""
        bad = dict(PROMPTS)
        bad[IntentType.CONTENT_PLANNING] = Prompt(
            system="s", user="{details} {recipient}", max_tokens=10, temperature=0
        )
        with pytest.raises(ValueError, match="recipient"):
            validate_table(bad)
        partial: dict[IntentType, Prompt] = {k: v for k, v in PROMPTS.items() if k is not IntentType.CAMPAIGN_EXECUTION}
        with pytest.raises(ValueError, match="campaign_execution"):
            validate_table(partial)


class TestRendering:
    def test_a_prompt_variant_adds_its_instruction_to_the_system_prompt(self) -> None:
        """concise adds its instruction; default and a variant this worker does not know add nothing."""
        intent = Intent(type=IntentType.MESSAGE_GENERATION, data={"goal": "hi"})
        plain = build_prompt(intent)
        assert build_prompt(intent, variant="concise").system == plain.system + PROMPT_VARIANTS["concise"]
        assert build_prompt(intent, variant="default").system == plain.system
        assert build_prompt(intent, variant="shouty").system == plain.system
        assert PROMPT_VARIANTS["concise"] and build_prompt(intent, variant="concise").user == plain.user

    def test_intent_fields_fill_the_user_message(self) -> None:
        """Platforms, content type, the task name and each data entry appear in the user message."""
        intent = Intent(
            type=IntentType.CONTENT_PLANNING,
            data={"topic": "beach shoot", "days": 5},
            platforms=["onlyfans", "instagram"],
            content_type="photo",
        )
        rendered = build_prompt(intent)
        assert rendered.system == PROMPTS[IntentType.CONTENT_PLANNING].system
        assert "days: 5\ntopic: beach shoot" in rendered.user
        assert "Platforms: onlyfans, instagram." in rendered.user
        assert "Content type: photo." in rendered.user
        assert "Task: content_planning." in rendered.user
        assert [m["role"] for m in rendered.messages] == ["system", "user"]

    def test_defaults_when_the_intent_says_little(self) -> None:
        """No data, platforms or content type still renders a complete request."""
        rendered = build_prompt(Intent(type=IntentType.MESSAGE_GENERATION))
        assert "(no details given)" in rendered.user
        assert "any platform" in rendered.user
        assert "Content type: any." in rendered.user

    def test_braces_in_user_data_are_inert(self) -> None:
        """User data is never parsed as a template: braces in it reach the prompt verbatim."""
        rendered = build_prompt(Intent(type=IntentType.CAMPAIGN_EXECUTION, data={"offer": "{platforms} {0}"}))
        assert "offer: {platforms} {0}" in rendered.user

    def test_details_are_sorted_structured_and_bounded(self) -> None:
        """Non-string values are JSON with sorted keys; each value and the whole block are cut to size."""
        assert render_details({"b": {"y": 1, "x": [1, 2]}, "a": "z"}) == 'a: z\nb: {"x":[1,2],"y":1}'
        huge = render_details({"a": "x" * (MAX_DETAIL_VALUE_CHARS * 2)})
        assert len(huge) == len("a: ") + MAX_DETAIL_VALUE_CHARS
        many = render_details({f"k{i:03}": "y" * MAX_DETAIL_VALUE_CHARS for i in range(20)})
        assert len(many) == MAX_DETAILS_CHARS

    def test_rendering_is_deterministic(self) -> None:
        """The same intent renders the same prompt (replies and estimates are then reproducible)."""
        intent = Intent(type=IntentType.CONTENT_VALIDATION, data={"text": "hi", "caption": "sun"})
        assert build_prompt(intent) == build_prompt(intent)


class TestFanVars:
    def test_a_fans_vars_go_into_that_fans_prompt(self) -> None:
        """A personalized text's prompt carries what is known of its fan, after the campaign's data."""
        intent = Intent(type=IntentType.CAMPAIGN_EXECUTION, data={"offer": "20% off"})
        rendered = build_prompt(intent, fan={"name": "Ann", "last_purchase": "beach set"})
        assert (
            "offer: 20% off\nAbout the fan this message is for:\nlast_purchase: beach set\nname: Ann" in rendered.user
        )
        assert "About the fan" not in build_prompt(intent).user
