"""Renders a chat template the way Hugging Face's transformers does (apply_chat_template), as an
independent reference for llama.cpp's own Jinja engine: jinja2's sandbox with trim_blocks,
lstrip_blocks and loop controls, `tojson` without ASCII escaping, `raise_exception` and
`strftime_now`.

Reads {"template": TEXT, "context": {...variables: messages, bos_token, eos_token,
add_generation_prompt, ...}} on stdin; writes the rendering to stdout. A template that raises
exits 1 with its message on stderr.
"""
import json
import sys
from datetime import datetime

from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise TemplateError(message)


def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


request = json.load(sys.stdin)
environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
environment.filters["tojson"] = tojson
environment.globals["raise_exception"] = raise_exception
environment.globals["strftime_now"] = strftime_now
try:
    sys.stdout.write(environment.from_string(request["template"]).render(**request["context"]))
except TemplateError as error:
    sys.stderr.write(str(error))
    sys.exit(1)
