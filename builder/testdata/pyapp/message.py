MESSAGE = "hello from python"
