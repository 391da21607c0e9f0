//! Response processing: the parser chain that turns the model's text into edits, commands and
//! directives.
