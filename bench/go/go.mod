module rctxbench

go 1.19
