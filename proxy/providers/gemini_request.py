"""The ``GenerateContentRequest`` for a translated chat call (reference §2.7).

Built from the internal chat form field by field: Gemini has its own roles, parts and config
names. Every field of the client's body is translated here or refused with a 400 naming it
(:data:`TRANSLATED`, :func:`proxy.providers.base.refuse_untranslated`); only the tuning fields
of :data:`~proxy.providers.base.TUNING_FIELDS` are dropped.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.chat import ChatRequest
from proxy.chat_form import (
    AudioPart,
    ChatBody,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    RefusalPart,
    TextPart,
    Tool,
    ToolCall,
)
from proxy.errors import InvalidRequest
from proxy.providers.base import UNREADABLE, inline_data, refuse_untranslated
from proxy.providers.gemini_calls import SKIP_SIGNATURE, CallMemory
from proxy.providers.logprobs import requested_top_logprobs
from proxy.providers.translated_fields import (
    CHAT_FIELDS,
    require_text_output,
)
from proxy.request_body import MAX_DEPTH, json_depth

#: The fields of an OpenAI chat body this translator carries to Gemini. ``modalities`` only in
#: the value Gemini honours (text); ``parallel_tool_calls: false`` is kept by the gateway.
TRANSLATED = CHAT_FIELDS

_TOOL_MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}
_AUDIO_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "aiff": "audio/aiff",
}
# Gemini 2.5 thinking budgets per OpenAI effort; "high" stays within every 2.5 model's maximum.
_THINKING_BUDGETS = {
    "none": 0,
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 24576,
    "max": 24576,
}
_PRO_MIN_BUDGET = 128  # 2.5 Pro cannot switch thinking off; this is its smallest budget
_THINKING_LEVELS = {
    "none": "MINIMAL",  # Gemini 3 always thinks; MINIMAL is the closest to "none"
    "minimal": "MINIMAL",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
    "xhigh": "HIGH",
    "max": "HIGH",
}


def _is_gemini3(model: str) -> bool:
    return model.removeprefix("models/").startswith("gemini-3")


def _is_pro(model: str) -> bool:
    return "-pro" in model


def build_body(
    request: ChatRequest, model: str, calls: CallMemory, provider: str
) -> dict[str, Any]:
    """The ``GenerateContentRequest`` for ``request``; a 400 naming any field Gemini cannot take."""
    refuse_untranslated(provider, request.raw, TRANSLATED)
    require_text_output(provider, request.raw)
    body = request.form()
    system, contents = _contents(body.messages, model, calls)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    if body.tools:
        out["tools"] = [{"functionDeclarations": [_declaration(tool) for tool in body.tools]}]
    if body.tool_choice is not None:
        out["toolConfig"] = {"functionCallingConfig": _calling_config(body.tool_choice)}
    config = _generation_config(body, model)
    if config:
        out["generationConfig"] = config
    return out


def _contents(
    messages: list[Message], model: str, calls: CallMemory
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System parts, and the turns with same-role neighbours merged (Gemini alternates roles)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool-call id -> function name, from earlier assistant turns

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        match message.role:
            case "system" | "developer":
                system.extend(_text_parts(message.content, where, message.role))
            case "user":
                add("user", _user_parts(message.content, where))
            case "assistant":
                add("model", _model_parts(message, where, model, calls, names))
            case "tool":
                add("user", [_tool_result(message, where, calls, names)])
            case "function":
                add("user", [_function_result(message, where)])
    return system, contents


def _text_parts(
    content: str | list[ContentPart] | None, where: str, role: str
) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            if part.text:
                parts.append({"text": part.text})
        elif isinstance(part, RefusalPart) and role == "assistant":
            parts.append({"text": part.refusal})
        else:
            raise InvalidRequest(
                f"A {role} message may only contain text parts.", param=f"{where}.content[{j}]"
            )
    return parts


def _user_parts(content: str | list[ContentPart] | None, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_parts(content, where, "user")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        param = f"{where}.content[{j}]"
        if isinstance(part, TextPart):
            if part.text:
                parts.append({"text": part.text})
        elif isinstance(part, ImagePart):
            parts.append({"inlineData": _data_url(part.image_url.url, f"{param}.image_url")})
        elif isinstance(part, AudioPart):
            parts.append({"inlineData": _audio(part, param)})
        elif isinstance(part, FilePart):
            parts.append({"inlineData": _file(part, param)})
        else:
            raise InvalidRequest("A user message cannot contain a refusal part.", param=param)
    return parts


def _data_url(url: str, param: str) -> dict[str, str]:
    """``inlineData`` from a data URL; Gemini cannot fetch addresses itself."""
    data = inline_data("gemini", url, param)
    return {"mimeType": data.media_type or "text/plain", "data": data.base64_payload()}


def _audio(part: AudioPart, param: str) -> dict[str, str]:
    mime_type = _AUDIO_TYPES.get(part.input_audio.format)
    if mime_type is None:
        raise InvalidRequest(
            f"Unsupported audio format {part.input_audio.format!r}; "
            f"use one of {', '.join(_AUDIO_TYPES)}.",
            param=f"{param}.input_audio.format",
        )
    return {"mimeType": mime_type, "data": part.input_audio.data}


def _file(part: FilePart, param: str) -> dict[str, str]:
    if part.file.file_data is None:
        raise InvalidRequest(
            "Gemini takes files inline: send 'file_data' as a data URL, not a file id.",
            param=f"{param}.file",
        )
    return _data_url(part.file.file_data, f"{param}.file.file_data")


def _model_parts(
    message: Message, where: str, model: str, calls: CallMemory, names: dict[str, str]
) -> list[dict[str, Any]]:
    parts = _text_parts(message.content, where, "assistant")
    for j, call in enumerate(message.tool_calls or ()):
        names[call.id] = call.function.name
        signature, native_id = _recall(call, calls)
        if signature is None and j == 0 and _is_gemini3(model):
            # Gemini 3 validates the signature of a turn's first function call.
            signature = SKIP_SIGNATURE
        function: dict[str, Any] = {
            "name": call.function.name,
            "args": _arguments(call, f"{where}.tool_calls[{j}].function.arguments"),
        }
        if native_id:
            function["id"] = call.id
        part: dict[str, Any] = {"functionCall": function}
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _recall(call: ToolCall, calls: CallMemory) -> tuple[str | None, bool]:
    """The call's signature (from the client's ``extra_content``, else memory) and id origin."""
    remembered, native_id = calls.recall(call.id)
    google = (call.extra_content or {}).get("google")
    sent = google.get("thought_signature") if isinstance(google, dict) else None
    return (sent if isinstance(sent, str) else remembered), native_id


def _arguments(call: ToolCall, param: str) -> dict[str, Any]:
    text = call.function.arguments
    if not text.strip():
        return {}
    try:
        args = msgspec.json.decode(text)
    except UNREADABLE:
        raise InvalidRequest(f"'{param}' is not valid JSON.", param=param) from None
    if json_depth(args) > MAX_DEPTH:
        raise InvalidRequest(f"'{param}' is nested too deeply.", param=param)
    if not isinstance(args, dict):
        raise InvalidRequest(f"'{param}' must be a JSON object.", param=param)
    return args


def _tool_result(
    message: Message, where: str, calls: CallMemory, names: dict[str, str]
) -> dict[str, Any]:
    call_id = message.tool_call_id
    if not call_id:
        raise InvalidRequest("A tool message needs 'tool_call_id'.", param=f"{where}.tool_call_id")
    name = names.get(call_id)
    if name is None:
        raise InvalidRequest(
            f"Tool message answers call {call_id!r}, which no earlier assistant message made.",
            param=f"{where}.tool_call_id",
        )
    result: dict[str, Any] = {"name": name, "response": _response_object(message, where)}
    if calls.recall(call_id)[1]:
        result["id"] = call_id
    return {"functionResponse": result}


def _function_result(message: Message, where: str) -> dict[str, Any]:
    """The legacy ``function`` role: the name is on the message itself."""
    if not message.name:
        raise InvalidRequest("A function message needs 'name'.", param=f"{where}.name")
    return {
        "functionResponse": {"name": message.name, "response": _response_object(message, where)}
    }


def _response_object(message: Message, where: str) -> dict[str, Any]:
    """``functionResponse.response`` must be an object: JSON objects as they are, else wrapped."""
    text = "".join(part["text"] for part in _text_parts(message.content, where, "tool"))
    try:
        value = msgspec.json.decode(text)
    except UNREADABLE:
        return {"result": text}
    if json_depth(value) > MAX_DEPTH:
        return {"result": text}  # too deep to re-encode as an object: pass the text on
    return value if isinstance(value, dict) else {"result": value}


def _declaration(tool: Tool) -> dict[str, Any]:
    function = tool.function
    out: dict[str, Any] = {"name": function.name}
    if function.description:
        out["description"] = function.description
    if function.parameters is not None:
        # Plain JSON Schema, as OpenAI clients write it: no conversion to Gemini's Schema subset.
        out["parametersJsonSchema"] = function.parameters
    return out


def _calling_config(choice: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(choice, str):
        return {"mode": _TOOL_MODES[choice]}
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if choice.get("type") != "function" or not isinstance(name, str) or not name:
        raise InvalidRequest(
            "'tool_choice' must be none, auto, required or "
            '{"type": "function", "function": {"name": ...}}.',
            param="tool_choice",
        )
    return {"mode": "ANY", "allowedFunctionNames": [name]}


def _generation_config(body: ChatBody, model: str) -> dict[str, Any]:
    config: dict[str, Any] = {}

    def put(key: str, value: object) -> None:
        if value is not None:
            config[key] = value

    put("temperature", body.temperature)
    put("topP", body.top_p)
    put("maxOutputTokens", body.max_completion_tokens or body.max_tokens)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    put("stopSequences", stop or None)
    put("candidateCount", body.n)
    put("seed", body.seed)
    put("presencePenalty", body.presence_penalty)
    put("frequencyPenalty", body.frequency_penalty)
    top_logprobs = requested_top_logprobs(body.logprobs, body.top_logprobs)
    if top_logprobs is not None:
        config["responseLogprobs"] = True
        put("logprobs", top_logprobs or None)
    if body.response_format is not None:
        config.update(_response_format(body.response_format))
    put("thinkingConfig", _thinking(body.reasoning_effort, model))
    return config


def _response_format(response_format: dict[str, Any]) -> dict[str, Any]:
    kind = response_format.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise InvalidRequest(
                "'response_format.json_schema' must be an object.",
                param="response_format.json_schema",
            )
        out: dict[str, Any] = {"responseMimeType": "application/json"}
        if spec.get("schema") is not None:
            out["responseJsonSchema"] = spec["schema"]
        return out
    raise InvalidRequest(
        f"Unsupported response_format type {kind!r}: use text, json_object or json_schema.",
        param="response_format.type",
    )


def _thinking(effort: str | None, model: str) -> dict[str, Any] | None:
    """``thinkingConfig``: a level for Gemini 3, a token budget for 2.5; thoughts returned."""
    if effort is None:
        return None
    if effort not in _THINKING_BUDGETS:
        raise InvalidRequest(
            f"Unsupported reasoning_effort {effort!r}: use one of {', '.join(_THINKING_BUDGETS)}.",
            param="reasoning_effort",
        )
    if _is_gemini3(model):
        level = _THINKING_LEVELS[effort]
        if level == "MINIMAL" and _is_pro(model):
            level = "LOW"  # the Pro models have no MINIMAL level
        return {"thinkingLevel": level, "includeThoughts": True}
    budget = _THINKING_BUDGETS[effort]
    if budget == 0 and _is_pro(model):
        budget = _PRO_MIN_BUDGET
    if budget == 0:
        return {"thinkingBudget": 0}  # thinking is off: there are no thoughts to include
    return {"thinkingBudget": budget, "includeThoughts": True}
