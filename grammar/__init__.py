"""Package data: the Lark grammar of `.lip` files, installed as `lipc.grammar`."""
