"""`{{name}}`: a Weir plugin. Blocks requests carrying `x-block`; marks the others with
`x-plugin: {{name}}`. Build with `weir plugin build .`, smoke-test with `weir plugin test .`."""

import weir
from weir import request


class WitWorld(weir.Plugin):
    def configure(self, config):
        # The chain entry's `config` table, as a dict; raise to refuse it.
        self.config = config

    def on_request(self):
        if request.header("x-block") is not None:
            return weir.respond(403, "blocked by {{name}}")
        request.set_header("x-plugin", "{{name}}")
        return weir.CONTINUE
