"""The ``zdu`` command line: parse, call one public function, render its report."""
