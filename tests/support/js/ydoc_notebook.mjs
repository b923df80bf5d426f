// JupyterLab's own shared notebook model (@jupyter/ydoc 4, the package the JupyterLab 4
// frontend uses), for tests/unit/formats/test_notebook.py. Two modes:
//
// node ydoc_notebook.mjs
//   Builds a notebook through the model's public API, the way the frontend edits one, and
//   prints two lines on stdout:
//     1. base64 of Y.encodeStateAsUpdate(ynotebook.ydoc)
//     2. JSON of ynotebook.toJSON() (how @jupyter/ydoc itself reads the document back)
//
// node ydoc_notebook.mjs read < update.b64
//   Applies a base64 update (one line on stdin) to a fresh YNotebook and prints JSON of its
//   toJSON(): how the frontend sees a document the server built.
//
// (Yjs warns "Invalid access: Add Yjs type to a document before reading data." on stderr while
// @jupyter/ydoc fills a cell's types before inserting the cell: expected, harmless.)
//
// tests/unit/formats/test_notebook.py checks both directions: documents the real frontend writes, read by
// jupyter_ydjango.notebook, and documents jupyter_ydjango.notebook writes, read by the frontend.

import * as Y from 'yjs'
import { YNotebook } from '@jupyter/ydoc'

const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='

if (process.argv[2] === 'read') {
  let input = ''
  process.stdin.setEncoding('utf8')
  for await (const chunk of process.stdin) input += chunk
  const reader = new YNotebook()
  Y.applyUpdate(reader.ydoc, Buffer.from(input.trim(), 'base64'))
  const json = JSON.stringify(reader.toJSON())
  reader.dispose()
  process.stdout.write(`${json}\n`, () => process.exit(0))
} else {
  build()
}

/** Builds the notebook described above and prints its update and toJSON(). */
function build () {
  const notebook = YNotebook.create()

  notebook.transact(() => {
    notebook.nbformat = 4
    notebook.nbformat_minor = 5
    notebook.setMetadata({
      kernelspec: { display_name: 'Python 3 (ipykernel)', language: 'python', name: 'python3' },
      language_info: {
        codemirror_mode: { name: 'ipython', version: 3 },
        name: 'python',
        version: '3.12.1'
      }
    })
  })
  notebook.setMetadata('widgets', {
    'application/vnd.jupyter.widget-state+json': { state: {}, version_major: 2, version_minor: 0 }
  })

  notebook.insertCells(0, [
    {
      id: 'md-1',
      cell_type: 'markdown',
      source: '# Title 😀\n\n漢字 and e\u0301 ![pic](attachment:pic.png)',
      metadata: {},
      attachments: { 'pic.png': { 'image/png': PNG } }
    },
    {
      id: 'code-1',
      cell_type: 'code',
      source: 'print("hi")',
      metadata: { tags: ['setup'], scrolled: true },
      execution_count: null,
      outputs: []
    },
    {
      id: 'raw-1',
      cell_type: 'raw',
      source: 'raw text',
      metadata: { format: 'text/plain' }
    },
    {
      id: 'code-2',
      cell_type: 'code',
      source: '1 / 0',
      metadata: {},
      execution_count: 4,
      outputs: [
        {
          output_type: 'error',
          ename: 'ZeroDivisionError',
          evalue: 'division by zero',
          traceback: ['\u001b[0;31mZeroDivisionError\u001b[0m: division by zero']
        }
      ]
    },
    {
      id: 'doomed',
      cell_type: 'markdown',
      source: 'deleted below',
      metadata: {}
    }
  ])

  // Edits as the frontend makes them while a user types and a kernel runs the code cell.
  const code = notebook.getCell(1)
  code.updateSource(code.getSource().length, code.getSource().length, '\nprint(42)')
  code.executionState = 'running'
  code.setOutputs([{ output_type: 'stream', name: 'stdout', text: 'hi\n' }])
  code.appendStreamOutput(0, '42\n')
  code.updateOutputs(1, 1, [
    {
      output_type: 'execute_result',
      execution_count: 3,
      data: { 'text/plain': '42', 'text/html': '<b>42</b>' },
      metadata: { scale: 0.5 }
    },
    {
      output_type: 'display_data',
      data: { 'image/png': PNG, 'text/plain': '<Figure size 640x480 with 1 Axes>' },
      metadata: { 'image/png': { width: 640, height: 480 } }
    }
  ])
  code.execution_count = 3
  code.executionState = 'idle'
  notebook.getCell(2).setSource('raw text, edited')
  notebook.deleteCell(4)

  const update = Buffer.from(Y.encodeStateAsUpdate(notebook.ydoc)).toString('base64')
  const json = JSON.stringify(notebook.toJSON())
  // dispose() stops the awareness timer that would otherwise keep node running
  notebook.dispose()
  process.stdout.write(`${update}\n${json}\n`, () => process.exit(0))
}
