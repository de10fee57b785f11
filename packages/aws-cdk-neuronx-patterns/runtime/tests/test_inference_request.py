"""Headers, body and fields: every bad request becomes a 4xx naming the field, with a short ASCII message."""

import json

import pytest

import neuronx_request
from neuronx_request import GenerationRequest, RequestError

JSON = "application/json"
HELLO = [{"role": "user", "content": "hello"}]


def body(**fields):
    return json.dumps({"messages": HELLO, **fields}).encode()


def parse(data, content_type=JSON):
    neuronx_request.check_content_type(content_type)
    return neuronx_request.parse_request(neuronx_request.parse_json_body(data))


def test_defaults():
    assert parse(body()) == GenerationRequest(messages=tuple(HELLO))
    assert neuronx_request.DEFAULT_ROLE == "assistant"
    assert (neuronx_request.DEFAULT_TEMPERATURE, neuronx_request.DEFAULT_TOP_P, neuronx_request.DEFAULT_TOP_K) == (0.7, 1.0, 50)


def test_every_field_is_read():
    request = parse(
        json.dumps(
            {
                "messages": [{"role": "system", "content": "you are helpful"}, {"role": "user", "content": "hello"}],
                "max_new_tokens": 12,
                "temperature": 0,
                "top_p": 0.9,
                "top_k": 5,
                "stop": ["STOP", "bye"],
                "role": "narrator",
            }
        ).encode(),
        "application/json; charset=utf-8",
    )
    assert request == GenerationRequest(
        messages=({"role": "system", "content": "you are helpful"}, {"role": "user", "content": "hello"}),
        role="narrator",
        max_new_tokens=12,
        temperature=0.0,
        top_p=0.9,
        top_k=5,
        stop=("STOP", "bye"),
    )


@pytest.mark.parametrize(
    "content_type",
    [
        JSON,
        "application/json; charset=utf-8",
        "Application/JSON",
        'application/json;charset="UTF-8"',
        "application/json; foo=bar",
    ],
)
def test_json_content_types(content_type):
    assert parse(body(), content_type).messages == tuple(HELLO)


@pytest.mark.parametrize(
    "text",
    [
        "\ufeff" + body().decode(),  # a byte order mark (RFC 8259 section 8.1: may be ignored)
        body().decode(),
    ],
)
def test_a_body_may_start_with_a_byte_order_mark(text):
    assert parse(text.encode()).messages == tuple(HELLO)


@pytest.mark.parametrize(
    "data, content_type, status, message",
    [
        (body(), "text/plain", 415, "Content-Type must be application/json, got 'text/plain'"),
        (body(), None, 415, "Content-Type is missing; send application/json"),
        (body(), "", 415, "Content-Type must be application/json, got ''"),
        (body(), "application/json; charset=latin-1", 415, "Content-Type charset must be utf-8 (JSON is UTF-8), got 'latin-1'"),
        (body(), "application/jsonx", 415, "Content-Type must be application/json"),
        (body(), "text/csv\u00ff\u4e2d", 415, "Content-Type must be application/json, got 'text/csv\\xff\\u4e2d'"),
        (b"", JSON, 400, "body is empty; send a JSON object with messages"),
        (b" \n", JSON, 400, "body is empty"),
        (b"{not json", JSON, 400, "body is not valid JSON: Expecting property name enclosed in double quotes at line 1"),
        (b"\xff\xfe\xfa", JSON, 400, "body is not UTF-8 (byte 0: 'invalid start byte')"),
        (json.dumps({"messages": HELLO}).encode("utf-16"), JSON, 400, "body is not UTF-8"),
        (b"null", JSON, 400, "body must be a JSON object with messages, got None"),
        (b'"hello"', JSON, 400, "body must be a JSON object with messages, got 'hello'"),
        (b"[1, 2]", JSON, 400, "body must be a JSON object with messages, got a list of 2 item(s)"),
        (b"{}", JSON, 400, "messages is required"),
        (b'{"messages": [], "messages": []}', JSON, 400, "body has the key 'messages' twice in one object"),
        (b"[" * 100_000 + b"]" * 100_000, JSON, 400, "body nests JSON arrays or objects too deeply"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, JSON, 400, "body nests JSON arrays or objects too deeply"),
        (b'{"messages": [], "temperature": NaN}', JSON, 400, "body has NaN, which is not a JSON number"),
        (b'{"temperature": -Infinity}', JSON, 400, "body has -Infinity, which is not a JSON number"),
        (b'{"top_k": 1' + b"0" * 5000 + b"}", JSON, 400, "body is not valid JSON: 'Exceeds the limit (4300 digits)"),
        (json.dumps({"messages": []}).encode(), JSON, 400, "messages must be a non-empty list"),
        (json.dumps({"messages": "hello"}).encode(), JSON, 400, "messages must be a non-empty list of {role, content} objects, got 'hello'"),
        (json.dumps({"messages": {"role": "user"}}).encode(), JSON, 400, "messages must be a non-empty list"),
        (json.dumps({"messages": ["hello"]}).encode(), JSON, 400, "messages[0] must be an object with role and content"),
        (json.dumps({"messages": [None]}).encode(), JSON, 400, "messages[0] must be an object with role and content, got None"),
        (
            json.dumps({"messages": HELLO + [{"role": "bot", "content": "x"}]}).encode(),
            JSON,
            400,
            "messages[1].role must be one of system, user, assistant, got 'bot'",
        ),
        (json.dumps({"messages": [{"content": "x"}]}).encode(), JSON, 400, "messages[0].role must be one of"),
        (json.dumps({"messages": [{"role": ["user"], "content": "x"}]}).encode(), JSON, 400, "messages[0].role must be one of"),
        (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), JSON, 400, "messages[0].content must be a string"),
        (json.dumps({"messages": [{"role": "user"}]}).encode(), JSON, 400, "messages[0].content must be a string"),
        (json.dumps({"messages": [{"role": "user", "content": None}]}).encode(), JSON, 400, "messages[0].content must be a string"),
        (
            json.dumps({"messages": [{"role": "user", "content": "x", "name": "a"}]}).encode(),
            JSON,
            400,
            "messages[0] has unknown field(s) 'name'",
        ),
        (
            b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}',
            JSON,
            400,
            "messages[0].content must be a string of valid Unicode, got 'a\\ud800b'",
        ),
        (
            b'{"messages": [{"role": "user", "content": "\\udfff"}], "role": "\\ud800"}',
            JSON,
            400,
            "messages[0].content must be a string of valid Unicode",
        ),
        (body(role="\ud800"), JSON, 400, "role must be a string of 1 to 64 printable characters, got '\\ud800'"),
        (body(stop=["\udc00"]), JSON, 400, "stop must be a list of at most 4 strings of 1 to 256 characters"),
        (body(prompt="hi", seed=1), JSON, 400, "unknown field(s) 'prompt', 'seed'; allowed: messages,"),
        (body(max_new_tokens="10"), JSON, 400, "max_new_tokens must be an integer >= 1, got '10'"),
        (body(max_new_tokens=0), JSON, 400, "max_new_tokens must be an integer >= 1, got 0"),
        (body(max_new_tokens=1.5), JSON, 400, "max_new_tokens must be an integer >= 1"),
        (body(max_new_tokens=True), JSON, 400, "max_new_tokens must be an integer >= 1, got True"),
        (body(max_new_tokens=-(10**400)), JSON, 400, "max_new_tokens must be an integer >= 1, got an integer of more than 40 digits"),
        (body(temperature=-0.1), JSON, 400, "temperature must be a number from 0.0 (greedy) to 2.0, got -0.1"),
        (body(temperature=2.01), JSON, 400, "temperature must be a number"),
        (body(temperature="hot"), JSON, 400, "temperature must be a number"),
        (body(temperature=None), JSON, 400, "temperature must be a number"),
        (body(temperature=10**400), JSON, 400, "temperature must be a number from 0.0 (greedy) to 2.0, got an integer of more"),
        (b'{"messages": [{"role": "user", "content": ""}], "temperature": 1e400}', JSON, 400, "temperature must be a number from 0.0 (greedy) to 2.0, got inf"),
        (body(top_p=0), JSON, 400, "top_p must be a number in (0, 1], got 0"),
        (body(top_p=1.01), JSON, 400, "top_p must be a number in (0, 1]"),
        (body(top_p=[0.5]), JSON, 400, "top_p must be a number in (0, 1], got a list of 1 item(s)"),
        (body(top_p=10**400), JSON, 400, "top_p must be a number in (0, 1]"),
        (body(top_k=0), JSON, 400, "top_k must be an integer >= 1, got 0"),
        (body(top_k=2.5), JSON, 400, "top_k must be an integer >= 1"),
        (body(top_k="5"), JSON, 400, "top_k must be an integer >= 1"),
        (body(top_k={"k": 5}), JSON, 400, "top_k must be an integer >= 1, got an object of 1 item(s)"),
        (body(stop="STOP"), JSON, 400, "stop must be a list of at most 4 strings of 1 to 256 characters, got 'STOP'"),
        (body(stop=[""]), JSON, 400, "stop must be a list of at most 4 strings"),
        (body(stop=[1]), JSON, 400, "stop must be a list"),
        (body(stop=["a", "b", "c", "d", "e"]), JSON, 400, "stop must be a list of at most 4"),
        (body(stop=["x" * 257]), JSON, 400, "stop must be a list of at most 4 strings of 1 to 256 characters"),
        (body(role=5), JSON, 400, "role must be a string"),
        (body(role="narrator\nuser"), JSON, 400, "role must be a string of 1 to 64 printable characters, got 'narrator\\nuser'"),
        (body(role="r" * 65), JSON, 400, "role must be a string"),
        (body(role=None), JSON, 400, "role must be a string"),
    ],
)  # fmt: skip
def test_bad_requests_are_4xx_naming_the_field(data, content_type, status, message):
    with pytest.raises(RequestError) as raised:
        parse(data, content_type)
    assert raised.value.status_code == status
    assert raised.value.message.startswith(message), raised.value.message
    assert raised.value.message.isascii() and len(raised.value.message) <= neuronx_request.MAX_PHRASE_CHARS


@pytest.mark.parametrize(
    "field, value", [("max_new_tokens", 1), ("temperature", 2), ("top_p", 1), ("top_k", 1), ("stop", ["a"] * 4)]
)
def test_bounds_are_inclusive(field, value):
    assert getattr(parse(body(**{field: value})), field) == (tuple(value) if field == "stop" else value)


def test_client_text_in_a_message_is_escaped_and_cut():
    with pytest.raises(RequestError) as raised:
        parse(body(role="\u4e2d\u6587\r\n" + "x" * 10_000))
    message = raised.value.message
    assert message.startswith("role must be a string of 1 to 64 printable characters, got '\\u4e2d\\u6587\\r\\nxxx")
    assert message.isascii() and message.isprintable() and len(message) < 150


def test_every_message_is_bounded_whatever_it_quotes():
    error = RequestError(400, "\u00e9" * 1000)
    assert error.message == "\\xe9" * 49 + "\\..."
    assert len(error.message) == neuronx_request.MAX_PHRASE_CHARS


def test_an_already_decoded_body_is_checked_the_same():
    """With TorchServe's decode_input_request=true the worker gets the JSON value, not the bytes."""
    assert neuronx_request.parse_json_body({"messages": HELLO}) == {"messages": HELLO}
    with pytest.raises(RequestError, match="messages is required"):
        neuronx_request.parse_request(neuronx_request.parse_json_body({}))


def test_an_empty_role_means_the_default_role_as_in_the_0_0_x_handler():
    assert parse(body(role="")).role == neuronx_request.DEFAULT_ROLE


@pytest.mark.parametrize(
    "accept",
    [None, "", JSON, "*/*", "application/*", "text/html, application/json;q=0.9", "*/*;q=0, application/json",
     "application/json;q=0.001", "application/json; Q=1.000", "text/csv;q=1, */*;q=0.5"],
)  # fmt: skip
def test_accept_allowing_json(accept):
    neuronx_request.check_accept(accept)


@pytest.mark.parametrize(
    "accept, status, message",
    [
        ("text/csv", 406, "Accept must allow application/json, got 'text/csv'"),
        ("application/json;q=0", 406, "Accept must allow application/json, got 'application/json;q=0'"),
        ("application/json;q=0.000, */*", 406, "Accept must allow application/json"),
        ("*/*;q=0", 406, "Accept must allow application/json"),
        ("application/*;q=0, */*", 406, "Accept must allow application/json"),
        ("application/json;q=2", 400, "Accept has q='2'; a q value is 0 to 1 with at most 3 decimals"),
        ("application/json;q=-1", 400, "Accept has q='-1'"),
        ("application/json;q=nan", 400, "Accept has q='nan'"),
        ("application/json;q=0.0001", 400, "Accept has q='0.0001'"),
        ("text/\u00e9", 406, "Accept must allow application/json, got 'text/\\xe9'"),
    ],
)
def test_accept_without_json_is_406(accept, status, message):
    with pytest.raises(RequestError) as raised:
        neuronx_request.check_accept(accept)
    assert (raised.value.status_code, raised.value.message) == (status, message) or (
        raised.value.status_code == status and raised.value.message.startswith(message)
    )


def test_headers_are_found_whatever_their_case():
    headers = {"body": {"content-type": JSON}, "CONTENT-TYPE": "text/plain", "accept": JSON}
    assert neuronx_request.header(headers, "content-type") == "text/plain"
    assert neuronx_request.header(headers, "accept") == JSON
    assert neuronx_request.header(headers, "body") is None  # TorchServe's parameter entry is not a header
