module driftless.dev/e2e

go 1.26.0

replace driftless.dev/shared => ../shared
