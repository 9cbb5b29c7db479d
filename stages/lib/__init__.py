"""Pure, testable building blocks shared by the stages."""
